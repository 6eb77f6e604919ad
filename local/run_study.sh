#!/usr/bin/env bash
# The EMA studies (issues 10 and 19), one resumable command each:
#
#   local/run_study.sh [--plan PLAN] [--results DIR] [--workdir DIR] [--jobs J]
#                      [--only-train] [--table-only]
#
#   first study (default):  --plan egs/synth/conf_study/study.json --results results/study
#   second study:           --plan egs/synth/conf_study_kaldi/study.json --results results/study_kaldi
#   on real speech:         --plan egs/digits/conf_study/study.json --results results/study_digits
#                           --workdir study_digits_work
#
# 1. ./run.sh stages 0-4 and 6 on the study corpus (egs/synth/conf_study: 5 h of training speech,
#    160 speakers; dev and test 0.5 h, 16 speakers each), into DIR (default study_work); both
#    synthetic plans use this corpus, each its own exp/<results name>/ runs. A plan with
#    "folds" (digits) instead gets the digits recipe once per left-out speaker, into
#    DIR/fold_<speaker> (that speaker test, the next one dev, 5 train);
# 2. python -m steps_py.study.run: every training run of the plan (after its learning-rate
#    pilot, if it has one), its decodes, the model chosen on dev per config, and the table and
#    plots in the results dir.
# Every step skips what is done, so stopping and rerunning (in a later session too)
# continues where it stopped. --table-only rebuilds the table and plots from the committed
# records alone (no corpus, no training). Each invocation's wall time is appended to
# <results>/invocations.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
invocation="local/run_study.sh $*"  # as typed, for invocations.tsv
workdir=study_work
plan=egs/synth/conf_study/study.json
results=results/study
table_only=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --workdir|--plan|--results|--jobs)
      [ $# -ge 2 ] || { echo "run_study.sh: $1 needs a value" >&2; exit 2; }
      case "$1" in
        --workdir) workdir="$2" ;; --plan) plan="$2" ;; --results) results="$2" ;;
        --jobs) extra+=(--jobs "$2") ;;
      esac
      shift 2 ;;
    --table-only) table_only=1; extra+=("$1"); shift ;;
    --only-train) extra+=("$1"); shift ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_study.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -f "$plan" ] || { echo "run_study.sh: plan $plan not found" >&2; exit 2; }
. ./path.sh
t0=$(date +%s)
folds=$(python -c "import json, sys; print(' '.join(json.load(open(sys.argv[1])).get('folds', {}).get('speakers', [])))" "$plan")
if [ -z "$table_only" ] && [ -z "$folds" ]; then
  # corpus, data dirs, lang + LM, features, GMM + alignments + graph; then the examples
  ./run.sh --conf-dir egs/synth/conf_study --workdir "$workdir" --stop-stage 4
  ./run.sh --conf-dir egs/synth/conf_study --workdir "$workdir" --stage 6 --stop-stage 6
fi
[ -n "$table_only" ] || for spk in $folds; do  # leave one speaker out: a digits recipe per fold
  for stages in "--stop-stage 4" "--stage 6 --stop-stage 6"; do
    # shellcheck disable=SC2086
    ./run.sh --corpus digits --corpus-dir ../shared/corpora/mandarin_digits \
      --workdir "$workdir/fold_$spk" --test-speaker "$spk" $stages
  done
done
python -m steps_py.study.run --plan "$plan" --workdir "$workdir" --results "$results" "${extra[@]}"
mkdir -p "$results"
printf '%s\t%s\t%d s\t%s\n' "$(date -u -d "@$t0" '+%Y-%m-%d %H:%M:%S')" "$(hostname)" \
  "$(( $(date +%s) - t0 ))" "$invocation" >> "$results/invocations.tsv"
