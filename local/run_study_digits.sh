#!/usr/bin/env bash
# The second EMA study on real speech (issue 19): Mandarin digits, leave one speaker out.
#
#   local/run_study_digits.sh [--workdir DIR] [--jobs J] [--table-only]
#
# For each of the corpus's 7 speakers, ./run.sh stages 0-4 and 6 of the digits recipe into
# DIR/fold_<speaker> with that speaker as test (the next one dev, 5 train); then
# python -m steps_py.study.run with egs/digits/conf_study/study.json: every run in every fold,
# its decodes, the model chosen on each fold's dev, and the table and plots in
# results/study_digits/ (all 2,239 utterances pooled). Resumable like local/run_study.sh;
# --table-only rebuilds the table from the committed records alone.
set -euo pipefail
cd "$(dirname "$0")/.."
workdir=study_digits_work
corpus=../shared/corpora/mandarin_digits
plan=egs/digits/conf_study/study.json
results=results/study_digits
table_only=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --workdir) [ $# -ge 2 ] || { echo "run_study_digits.sh: --workdir needs a value" >&2; exit 2; }
               workdir="$2"; shift 2 ;;
    --jobs) [ $# -ge 2 ] || { echo "run_study_digits.sh: --jobs needs a value" >&2; exit 2; }
            extra+=(--jobs "$2"); shift 2 ;;
    --table-only) table_only=1; extra+=("$1"); shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_study_digits.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
. ./path.sh
t0=$(date +%s)
if [ -z "$table_only" ]; then
  speakers=$(python -c "import json; print(' '.join(json.load(open('$plan'))['folds']['speakers']))")
  for spk in $speakers; do
    for stages in "--stop-stage 4" "--stage 6 --stop-stage 6"; do
      # shellcheck disable=SC2086
      ./run.sh --corpus digits --corpus-dir "$corpus" --workdir "$workdir/fold_$spk" \
        --test-speaker "$spk" $stages
    done
  done
fi
python -m steps_py.study.run --plan "$plan" --workdir "$workdir" --results "$results" "${extra[@]}"
mkdir -p "$results"
printf '%s\t%s\t%d s\t%s\n' "$(date -u -d "@$t0" '+%Y-%m-%d %H:%M:%S')" "$(hostname)" \
  "$(( $(date +%s) - t0 ))" "local/run_study_digits.sh ${extra[*]:-}" >> "$results/invocations.tsv"
