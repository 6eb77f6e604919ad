#!/usr/bin/env bash
# The EMA study (issue 10), one resumable command:
#
#   local/run_study.sh [--workdir DIR] [--only-train] [--table-only]
#
# 1. ./run.sh stages 0-4 and 6 on the study corpus (egs/synth/conf_study: 5 h of training speech,
#    160 speakers; dev and test 0.5 h, 16 speakers each), into DIR (default study_work);
# 2. python -m steps_py.study.run: every training run of egs/synth/conf_study/study.json, its
#    decodes, the EMA half-life chosen on dev per config, post-hoc EMA, and the table and
#    plots in results/study/.
# Every step skips what is done, so stopping and rerunning (in a later session too)
# continues where it stopped. Each invocation's wall time is appended to
# results/study/invocations.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
workdir=study_work
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --workdir) [ $# -ge 2 ] || { echo "run_study.sh: --workdir needs a value" >&2; exit 2; }
               workdir="$2"; shift 2 ;;
    --only-train|--table-only) extra+=("$1"); shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_study.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
. ./path.sh
t0=$(date +%s)
# corpus, data dirs, lang + LM, features, GMM + alignments + graph; then the examples
./run.sh --conf-dir egs/synth/conf_study --workdir "$workdir" --stop-stage 4
./run.sh --conf-dir egs/synth/conf_study --workdir "$workdir" --stage 6 --stop-stage 6
python -m steps_py.study.run --plan egs/synth/conf_study/study.json --workdir "$workdir" \
  --results results/study "${extra[@]}"
mkdir -p results/study
printf '%s\t%s\t%d s\t%s\n' "$(date -u -d "@$t0" '+%Y-%m-%d %H:%M:%S')" "$(hostname)" \
  "$(( $(date +%s) - t0 ))" "local/run_study.sh ${extra[*]:-}" >> results/study/invocations.tsv
