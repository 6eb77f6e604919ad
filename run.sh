#!/usr/bin/env bash
# The whole recipe, top to bottom (Kaldi/icefall conventions). Needs bash >= 4.4.
#
#   ./run.sh                                # everything on the embedded synthetic corpus
#   ./run.sh --stage 5 --stop-stage 5       # one stage (here: GMM decoding)
#   ./run.sh --corpus aishell --corpus-dir /data/aishell
#   ./run.sh --corpus kaldi --corpus-dir /data/mydirs   # holds train/ dev/ test/ Kaldi dirs
#   ./run.sh --corpus digits --corpus-dir ../shared/corpora/mandarin_digits   # real 8 kHz digits + Kaldi's exp
#   ./run.sh --ali-dir /kaldi/s5/exp/mono_ali   # train the networks on a Kaldi experiment's alignments
#
# Stages: 0 corpus | 1 data dirs | 2 lang + LM | 3 features | 4 GMM-HMM, alignments, graph |
# 5 GMM decoding | 6 training examples | 7 parallel training | 8 decoding | 9 scoreboard.
# Every stage skips work that is already done (and says so); --force redoes it, and the
# steps that record their inputs (docs/CONFIG.md) then redo what was made from the old outputs.
# Settings: egs/<corpus>/conf/run.conf (--conf-dir), every key explained in docs/CONFIG.md.
if [ -z "${BASH_VERSINFO:-}" ] || [ "${BASH_VERSINFO[0]}" -lt 4 ] ||
   { [ "${BASH_VERSINFO[0]}" -eq 4 ] && [ "${BASH_VERSINFO[1]}" -lt 4 ]; }; then
  echo "run.sh needs bash >= 4.4 (associative arrays, empty arrays under set -u); this is bash ${BASH_VERSION:-?}" >&2
  exit 2
fi
{ # braces: bash reads the whole script before running it, so editing run.sh (or a git pull)
  # while it runs cannot change what it does half-way
set -Eeuo pipefail
caller_pwd=$PWD
invocation="$0${*:+ $*}"  # for the workdir lock: who holds it
cd "$(dirname "$0")"

last_stage=9
stage=0
stop_stage=$last_stage
corpus=synth
corpus_dir=""
nj=2
conf_dir=""
force=""
resume=--resume
seed=0
seeds=""
seeds_given=""
workdir=.
encoding=""
dry_run=""
ali_dir=""
test_speaker=""

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  echo; cat <<USAGE
Options:
  --stage N           first stage to run, 0..$last_stage (default $stage)
  --stop-stage M      last stage to run (default and at most $last_stage)
  --corpus NAME       synth | aishell | kaldi | digits (default $corpus); digits: the networks
                      train on the project's alignments and on the corpus's Kaldi ones
  --corpus-dir DIR    where the corpus lives (synth: where to write it; default <workdir>/corpus/<corpus>)
  --conf-dir DIR      configs: run.conf (and corpus.json for synth) (default egs/<corpus>/conf)
  --nj N              parallel jobs for data, features, GMM and decoding (default $nj)
  --seed S            seed for corpus synthesis and training (default $seed)
  --seeds "S1 S2 .."  train (and decode) every run once per seed, in exp/<run>_seed<S>;
                      the scoreboard then gives mean and spread (default: just --seed)
  --encoding ENC      encoding of the corpus's Kaldi data-dir files and LM text (stage 1), e.g.
                      gb18030 (default utf-8); the data dirs it writes are UTF-8
  --workdir DIR       where corpus/, data/, exp/, results/ and logs/ go (default: the recipe dir)
  --ali-dir DIR       a Kaldi exp dir (final.mdl + ali.*.gz or *.ali) whose alignments train the
                      networks (stage 6) instead of the project's GMM; stage 4 then only builds the
                      graph from its final.mdl (monophone models) into exp/kaldi_ali/graph, with
                      the lang ali_lang_test of run.conf (default data/lang_test), which must have
                      the Kaldi model's phones (python -m steps_py.kaldi.lang_import makes one)
  --test-speaker SPK  digits: one leave-one-speaker-out fold (SPK test, the next speaker dev,
                      the rest train) instead of the 5/1/1 split
  --force             redo stages even if their outputs exist
  --no-resume         stage 7: start an unfinished training run from scratch instead of
                      resuming it from its last checkpoint (resuming is the default)
  --dry-run           check the flags and the config, say what would run, and exit
  -h, --help          this text
USAGE
}

die() { echo "run.sh: $*" >&2; exit 2; }
# An option that takes a value must get one (not the end of the line, not the next option).
need_value() { if [ $# -lt 2 ] || [[ "$2" == --* ]]; then die "$1 needs a value (see --help)"; fi; }
abs_path() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$caller_pwd/$1" ;; esac; }

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) need_value "$@"; stage=$2; shift 2 ;;
    --stop-stage|--stop_stage) need_value "$@"; stop_stage=$2; shift 2 ;;
    --corpus) need_value "$@"; corpus=$2; shift 2 ;;
    --corpus-dir) need_value "$@"; corpus_dir=$(abs_path "$2"); shift 2 ;;
    --conf-dir) need_value "$@"; conf_dir=$(abs_path "$2"); shift 2 ;;
    --nj) need_value "$@"; nj=$2; shift 2 ;;
    --seed) need_value "$@"; seed=$2; shift 2 ;;
    --seeds) need_value "$@"; seeds=$2; seeds_given=1; shift 2 ;;
    --encoding) need_value "$@"; encoding=$2; shift 2 ;;
    --workdir) need_value "$@"; workdir=$(abs_path "$2"); shift 2 ;;
    --ali-dir) need_value "$@"; ali_dir=$(abs_path "$2"); shift 2 ;;
    --test-speaker) need_value "$@"; test_speaker=$2; shift 2 ;;
    --force) force=--force; shift ;;
    --resume) resume=--resume; shift ;;
    --no-resume) resume=""; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done

# ---- flags: every mistake is an error here, before any work --------------------------------
case "$corpus" in synth|aishell|kaldi|digits) ;; *) die "--corpus must be synth, aishell, kaldi or digits, not '$corpus'" ;; esac
[ -z "$test_speaker" ] || [ "$corpus" = digits ] || die "--test-speaker is for --corpus digits only"
[ "$corpus" != digits ] || [ -z "$ali_dir" ] ||
  die "--corpus digits trains the networks on both the project's and the corpus's Kaldi alignments; drop --ali-dir"

[[ "$stage" =~ ^[0-9]+$ ]] || die "--stage '$stage': give a stage number 0..$last_stage"
[[ "$stop_stage" =~ ^[0-9]+$ ]] || die "--stop-stage '$stop_stage': give a stage number 0..$last_stage"
stage=$((10#$stage)); stop_stage=$((10#$stop_stage))
[ "$stage" -le "$last_stage" ] || die "--stage $stage: there is no such stage, the last one is $last_stage (see --help)"
[ "$stage" -le "$stop_stage" ] || die "--stage $stage is after --stop-stage $stop_stage: nothing would run"
[ "$stop_stage" -le "$last_stage" ] || stop_stage=$last_stage
[[ "$nj" =~ ^[1-9][0-9]*$ ]] || die "--nj '$nj': give a positive integer"
[ -z "$seeds_given" ] || [[ "$seeds" =~ [^[:space:]] ]] ||
  die "--seeds '$seeds': give one or more seeds, e.g. \"0 1 2\" (or leave --seeds out for just --seed)"
[ -n "$seeds" ] || seeds=$seed
[ -z "$encoding" ] || python3 -c 'import codecs, sys; codecs.lookup(sys.argv[1])' "$encoding" 2> /dev/null ||
  die "--encoding '$encoding' is not an encoding Python knows; give e.g. gb18030, gbk, utf-16"
read -r -a seed_list <<< "$seeds"
[ "${#seed_list[@]}" -gt 0 ] || die "--seeds '$seeds': give one or more seeds, e.g. \"0 1 2\""
declare -A seen_seed=()
for s in "$seed" "${seed_list[@]}"; do
  [[ "$s" =~ ^[0-9]+$ ]] || die "--seed/--seeds: '$s' is not a seed (a non-negative integer)"
done
for s in "${seed_list[@]}"; do
  [ -z "${seen_seed[$s]:-}" ] || die "--seeds '$seeds': seed $s is given twice"
  seen_seed[$s]=1
done
[ -n "$corpus_dir" ] || corpus_dir="$workdir/corpus/$corpus"
data="$workdir/data"; exp="$workdir/exp"; results="$workdir/results"
[ -n "$conf_dir" ] || conf_dir="egs/$corpus/conf"
if [ "$corpus" != synth ] && [ ! -d "$corpus_dir" ]; then
  die "--corpus-dir '$corpus_dir' does not exist; point it at your $corpus corpus"
fi
conf_file="$conf_dir/run.conf"
[ -f "$conf_file" ] || die "no $conf_file; copy egs/synth/conf/run.conf and edit it"

# ---- the config: a bash file of known keys (docs/CONFIG.md) ------------------------------
# Keys a run.conf may set; docs/CONFIG.md explains each (tests/test_recipe_config.py keeps
# the two lists equal). The *_opts arrays are indexed by model, sync or feature-kind name.
conf_required=(lm_order gmm_opts gmm_decode_opts egs_types egs_opts train_runs train_opts ema_opts nnet_decode_opts)
conf_optional=(align_opts tri_opts nnet_gmm launcher sync_opts ali_lang_test feat_opts lm_arpa lm_prune job_cmd)
models=(dnn lstm)                       # steps_py.nnet.egs --model-type
syncs=(none ddp ma bmuf-cbm bmuf-nbm)   # steps_py.parallel.train --sync (SYNC_CHOICES of sync.py)
declare -A egs_opts=() train_opts=() sync_opts=() feat_opts=()
align_opts=""
tri_opts=""
nnet_gmm=""  # the GMM whose alignments and graph the networks use: mono or tri1 (default: tri1 with tri_opts)
launcher=torchrun
lm_arpa=""; lm_prune=""
job_cmd=""  # empty: train_cmd of <conf-dir>/cmd.sh (Kaldi's), else local

in_list() { local x=$1 y; shift; for y in "$@"; do [ "$x" = "$y" ] && return 0; done; return 1; }
conf_error() { die "$conf_file: $*"; }
# The variables a config file sets: it is sourced in a clean bash, from the recipe root.
conf_keys() {
  env -i PATH="$PATH" HOME="${HOME:-/}" bash --norc --noprofile -c '
    declare -A egs_opts train_opts sync_opts feat_opts
    before=$(compgen -v)
    . "$1" > /dev/null || exit 1
    comm -13 <(printf "%s\n" $before | sort) <(compgen -v | sort) | grep -vx before || true' _ "$1"
}
# Which file sets KEY: the config or one of the files it sources (". FILE" lines).
file_setting() {
  local f
  for f in "$conf_file" $(sed -nE 's/^[[:space:]]*(\.|source)[[:space:]]+"?([^" ;]+)"?.*/\2/p' "$conf_file"); do
    if grep -qE "^[[:space:]]*(declare[^=]*[[:space:]])?$1(\[|=|\+=)" "$f" 2> /dev/null; then echo "$f"; return; fi
  done
  echo "$conf_file (or a file it sources)"
}
keys=$(conf_keys "$conf_file") || die "$conf_file does not load (its bash error is above)"
for k in $keys; do
  in_list "$k" "${conf_required[@]}" "${conf_optional[@]}" && continue
  hint=""
  case "$k" in egs_opts_*|train_opts_*|sync_opts_*)
    base=${k%%_opts_*}_opts; sub=${k#*_opts_}; hint=" (write $base[${sub//_/-}]=\"...\"; the *_opts keys are arrays now)" ;;
  esac
  die "unknown key '$k' in $(file_setting "$k")$hint; allowed keys: ${conf_required[*]} ${conf_optional[*]}"
done
# shellcheck disable=SC1090
. "$conf_file"
for k in "${conf_required[@]}"; do
  case "$k" in egs_opts|train_opts) continue ;; esac  # checked per model below
  [ -n "${!k+set}" ] || conf_error "missing required key '$k' (docs/CONFIG.md explains it)"
done
[[ "$lm_order" =~ ^[1-9][0-9]*$ ]] || conf_error "lm_order='$lm_order': give the n-gram order (e.g. 3)"
in_list "$launcher" torchrun simulate || conf_error "launcher='$launcher': torchrun or simulate"
[ -z "$nnet_gmm" ] || in_list "$nnet_gmm" mono tri1 || conf_error "nnet_gmm='$nnet_gmm': mono or tri1"
[ "$nnet_gmm" != tri1 ] || [ -n "$tri_opts" ] || conf_error "nnet_gmm=tri1 needs tri_opts (the triphone system)"
job_cmd_from="$conf_file: job_cmd"
if [ -z "$job_cmd" ] && [ -f "$conf_dir/cmd.sh" ]; then  # a Kaldi cmd.sh: export train_cmd="slurm.pl --mem 2G"
  job_cmd=$(bash --norc -c '. "$1" > /dev/null; printf %s "${train_cmd:-}"' _ "$conf_dir/cmd.sh") ||
    die "$conf_dir/cmd.sh does not load (its bash error is above)"
  job_cmd_from="$conf_dir/cmd.sh: train_cmd"
fi
job_cmd=${job_cmd:-local}
case "${job_cmd%% *}" in local|run.pl|slurm|slurm.pl|srun) ;;
  *) die "$job_cmd_from='$job_cmd': give local (run.pl) or 'slurm <srun options>' (slurm.pl)" ;; esac
[ -z "$lm_arpa" ] || [ -f "$lm_arpa" ] || conf_error "lm_arpa='$lm_arpa': no such file (a text ARPA LM, relative to the recipe root)"
[ -z "$lm_prune" ] || [[ "$lm_prune" =~ ^[0-9.]+([eE]-?[0-9]+)?$ ]] || conf_error "lm_prune='$lm_prune': give an entropy-pruning threshold (e.g. 1e-8)"
read -r -a egs_list <<< "$egs_types"
[ "${#egs_list[@]}" -gt 0 ] || conf_error "egs_types is empty: give dnn and/or lstm"
for m in "${egs_list[@]}"; do
  in_list "$m" "${models[@]}" || conf_error "egs_types: unknown model '$m' (models: ${models[*]})"
  [ -n "${egs_opts[$m]+set}" ] || conf_error "missing egs_opts[$m] (the options of stage 6 for $m; \"\" for none)"
done
for m in "${!egs_opts[@]}"; do
  in_list "$m" "${models[@]}" || conf_error "egs_opts[$m]: unknown model '$m' (models: ${models[*]})"
done
for m in "${!train_opts[@]}"; do
  in_list "$m" "${models[@]}" || conf_error "train_opts[$m]: unknown model '$m' (models: ${models[*]})"
done
for k in "${!feat_opts[@]}"; do
  in_list "$k" mfcc fbank || conf_error "feat_opts[$k]: unknown feature kind '$k' (mfcc, fbank)"
done
for s in "${!sync_opts[@]}"; do
  in_list "$s" "${syncs[@]}" || conf_error "sync_opts[$s]: unknown sync '$s' (syncs: ${syncs[*]})"
done
read -r -a runs <<< "$train_runs"
for r in "${runs[@]}"; do
  IFS=: read -r m sync n extra <<< "$r"
  [ -z "$extra" ] && in_list "$m" "${egs_list[@]}" && in_list "$sync" "${syncs[@]}" && [[ "$n" =~ ^[1-9][0-9]*$ ]] ||
    conf_error "train_runs: '$r' is not model:sync:workers with a model of egs_types (${egs_list[*]}), a sync of ${syncs[*]} and workers >= 1"
  [ -n "${train_opts[$m]+set}" ] || conf_error "missing train_opts[$m] (the trainer's options for $m, used by '$r')"
done

# A training run is model:sync:workers; with several --seeds each is repeated per seed.
# A 5th argument tags runs of another alignment source (digits: kaldiali): exp/<run>_<tag>[_seed<S>].
run_dir() {
  local d=$exp/${1}_${2}_n${3}${5:+_$5}
  if [ "${#seed_list[@]}" -gt 1 ]; then echo "${d}_seed${4}"; else echo "$d"; fi
}
# The alignment sources of stages 6-8, in parallel arrays: a tag for the egs and run dirs
# ("" = untagged), the Kaldi exp dir whose alignments are used ("" = the project's GMM,
# exp/mono_ali) and the graph its networks are decoded with. Normally one source (the
# project's GMM, or --ali-dir); the digits corpus also trains on its Kaldi experiment's.
ali_tags=(""); ali_dirs=("$ali_dir")
kaldi_gmm=$exp/mono_kaldi_allspk   # digits: Kaldi's own final.mdl (trained on all 7 speakers)
[ "$corpus" != digits ] || { ali_tags+=(kaldiali); ali_dirs+=("$corpus_dir/kaldi_exp_mono"); }
egs_dir() { echo "$exp/egs${2:+_$2}/$1"; }  # model, alignment tag

if [ -n "$dry_run" ]; then
  echo "run.sh: flags and $conf_file are valid; stages $stage..$stop_stage would run in $workdir"
  for a in "${ali_tags[@]}"; do for r in "${runs[@]}"; do for sd in "${seed_list[@]}"; do
    IFS=: read -r m sync n <<< "$r"
    echo "  training run $(run_dir "$m" "$sync" "$n" "$sd" "$a"): $m, --sync $sync, $n workers ($launcher)"
  done; done; done
  exit 0
fi

# ---- the log: everything below goes to the terminal and to logs/run-<time>.log -------------
log_file="$workdir/logs/run-$(date +%Y%m%d-%H%M%S).log"
[ ! -e "$log_file" ] || log_file="${log_file%.log}-$$.log"
if ! mkdir -p "$workdir/logs" 2> /dev/null || ! : >> "$log_file" 2> /dev/null; then
  echo "run.sh: cannot write to --workdir '$workdir' (read-only file system, or no permission); choose a writable --workdir" >&2
  exit 1
fi
# One run per workdir: a second run.sh on it would redo stages under the first one's feet.
# The lock is an flock on $workdir/.run.lock (released by the kernel when this run ends, however
# it ends); the file says who holds it.
lock_file="$workdir/.run.lock"
exec 9<> "$lock_file"
if ! flock -n 9; then
  rm -f "$log_file"
  echo "run.sh: --workdir '$workdir' is in use by another run.sh ($(tr '\n' ' ' < "$lock_file" 2> /dev/null));" \
    "wait for it to finish or stop it (kill its pid), then rerun" >&2
  exit 1
fi
printf 'pid %s since %s: %s\n' "$$" "$(date '+%Y-%m-%d %H:%M:%S')" "$invocation" > "$lock_file"
exec 3>&1 4>&2
exec > >(tee -a "$log_file") 2>&1
tee_pid=$!
log() { echo "$(date '+%Y-%m-%d %H:%M:%S') (run.sh:${BASH_LINENO[0]}) $*"; }
cur_stage=""
on_error() {  # a command failed (set -e): say which stage and step, then run.sh stops
  [ "$BASHPID" = "$$" ] || return 0
  local cmd=${cur_cmd:-$2}; cmd=${cmd%% --*}
  log "ERROR: stage ${cur_stage:-?} failed: '$cmd' exited with status $1 (its error is above)." \
      "Fix it and rerun with --stage ${cur_stage:-$stage}; the whole log: $log_file"
}
on_exit() { local rc=$?; exec 1>&3 2>&4; wait "$tee_pid" 2> /dev/null || true; exit "$rc"; }
# The steps run in the background while run.sh waits for them, so that a SIGTERM or SIGINT
# to run.sh (kill <pid>, Ctrl-C) reaches them too: run.sh stops the step and then itself,
# instead of ending alone and leaving, say, a trainer running under init.
# A signal that lands after a step started but before `child=$!` finds the step as $!, which
# then differs from bg_before.
child=""; cur_cmd=""; bg_before=""
run_py() {
  cur_cmd="python $*"
  bg_before=${!:-}
  python "$@" &
  child=$!; bg_before=""
  local rc=0
  wait "$child" || rc=$?
  child=""
  [ "$rc" -ne 0 ] || cur_cmd=""
  return "$rc"
}
descendants() { local c; for c in $(ps -o pid= --ppid "$1" 2> /dev/null); do echo "$c"; descendants "$c"; done; }
on_signal() {  # forward to the running step (SIGTERM: a background step ignores SIGINT), then stop
  trap '' INT TERM
  if [ -z "$child" ] && [ -n "$bg_before" ] && [ "${!:-}" != "$bg_before" ]; then child=$!; fi
  if [ -n "$child" ]; then
    log "run.sh: got SIG$1; stopping '${cur_cmd%% --*}' (pid $child) and exiting"
    local tree; tree=$(descendants "$child")
    kill -TERM "$child" $tree 2> /dev/null || true  # the step, and its workers (a pool, torchrun's)
    wait "$child" 2> /dev/null || true
  else
    log "run.sh: got SIG$1; exiting"
  fi
  trap - ERR
  exit "$2"
}
trap 'on_error $? "$BASH_COMMAND"' ERR
trap on_exit EXIT
trap 'on_signal TERM 143' TERM
trap 'on_signal INT 130' INT
log "log file: $log_file"

. ./path.sh
t_start=$(date +%s)

stage_on() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ] && cur_stage=$1; }
# Option strings of the config, split on white space (no quoting inside them).
read -r -a gmm_args <<< "$gmm_opts"
read -r -a align_args <<< "$align_opts"
read -r -a tri_args <<< "$tri_opts"
read -r -a gmm_decode_args <<< "$gmm_decode_opts"
read -r -a ema_args <<< "$ema_opts"
read -r -a nnet_decode_args <<< "$nnet_decode_opts"

# One training run of stage 7, N workers: torchrun processes (steps_py.parallel.launch is
# torchrun with every socket on loopback), N simulated workers in one process
# (launcher=simulate: same algorithms, same results), or a single worker.
launch_training() {
  local n=$1; shift
  if [ "$n" -gt 1 ] && [ "$launcher" = torchrun ]; then
    run_py -m steps_py.parallel.launch --nnodes 1 --nproc_per_node "$n" -m steps_py.parallel.train "$@"
  elif [ "$n" -gt 1 ]; then
    run_py -m steps_py.parallel.train --simulate "$n" "$@"
  else
    run_py -m steps_py.parallel.train "$@"
  fi
}

pinyin_lexicon="$data/local/lexicon_pinyin.txt"  # the Mandarin corpora's pronunciation lexicon

if stage_on 0; then
  log "stage 0: corpus ($corpus)"
  case "$corpus" in
    synth) run_py -m local.synth --out-dir "$corpus_dir" --config "$conf_dir/corpus.json" \
             --seed "$seed" --nj "$nj" $force ;;
    aishell) run_py -m local.aishell.prepare --corpus-dir "$corpus_dir" --out "$data/local/aishell" \
               --nj "$nj" $force ;;
    kaldi) log "Kaldi data dirs are read from $corpus_dir/{train,dev,test} by stage 1" ;;
    digits) run_py -m local.digits.prepare --corpus-dir "$corpus_dir" --out "$data/local/digits" \
              ${test_speaker:+--test-speaker "$test_speaker"} $force ;;
  esac
fi

if stage_on 1; then
  log "stage 1: pronunciation lexicon and checked Kaldi data dirs in $data/"
  lexicon=$pinyin_lexicon
  if [ "$corpus" = digits ]; then lexicon=$corpus_dir/lexicon.txt  # the corpus's own
  else run_py -m local.mandarin.lexicon --out "$pinyin_lexicon" $force; fi
  case "$corpus" in
    synth) src=(--manifests "$corpus_dir/manifests" --lm-text "$corpus_dir/lm_text.txt") ;;
    aishell) src=(--manifests "$data/local/aishell/manifests") ;;
    kaldi) src=(--kaldi-dirs "$corpus_dir") ;;
    digits) src=(--kaldi-dirs "$data/local/digits") ;;
  esac
  # audio must meet the feature config (sample rate, channel); default 16 kHz mono
  [ -f "$conf_dir/mfcc.conf" ] && src+=(--audio-conf "$conf_dir/mfcc.conf")
  [ -z "$encoding" ] || src+=(--encoding "$encoding")
  run_py -m steps_py.data.prepare "${src[@]}" --lexicon "$lexicon" --out "$data" --nj "$nj" $force
fi

if stage_on 2 && [ "$corpus" = digits ]; then
  # the corpus's Kaldi lang files, Kaldi's phone and word ids kept (its final.mdl and the
  # project's GMM then share phones and graph), and its ARPA LM (a uniform unigram)
  log "stage 2: $data/lang and $data/lang_test (G.fst of $corpus_dir/lm.arpa) from $corpus_dir/kaldi_lang"
  run_py -m steps_py.kaldi.lang_import --kaldi-lang "$corpus_dir/kaldi_lang" --out "$data/lang" $force
  run_py -m steps_py.kaldi.lang_import --kaldi-lang "$corpus_dir/kaldi_lang" --arpa "$corpus_dir/lm.arpa" \
    --out "$data/lang_test" $force
elif stage_on 2; then
  # lm_arpa: the user's ARPA LM (word or character); its words join the lexicon
  lm_args=(--order "$lm_order"); dict_args=(); lm_what="${lm_order}-gram LM"
  [ -z "$lm_arpa" ] || { lm_args=(--arpa "$lm_arpa"); dict_args=(--words "$lm_arpa"); lm_what="LM $lm_arpa"; }
  [ -z "$lm_prune" ] || { lm_args+=(--prune "$lm_prune"); lm_what+=" pruned at $lm_prune"; }
  log "stage 2: dict dir, $data/lang, $lm_what, $data/lang_test/G.fst"
  run_py -m local.mandarin.prepare_dict --data "$data" --lexicon "$pinyin_lexicon" --out "$data/local/dict" \
    ${dict_args[@]+"${dict_args[@]}"} $force
  run_py -m steps_py.lang.prepare --dict-dir "$data/local/dict" --out "$data/lang" $force
  run_py -m steps_py.lang.lm --data "$data" --lang "$data/lang" --out "$data/lang_test" "${lm_args[@]}" $force
fi

if stage_on 3; then
  log "stage 3: MFCC (GMM) and fbank (networks) features with CMVN stats"
  for kind in mfcc fbank; do
    # Kaldi feature configs, as make_mfcc.sh / make_mfcc_pitch.sh: $conf_dir/{mfcc,fbank,pitch}.conf
    fopts=()
    [ -f "$conf_dir/$kind.conf" ] && fopts+=(--conf "$conf_dir/$kind.conf")
    [ -f "$conf_dir/pitch.conf" ] && fopts+=(--pitch-conf "$conf_dir/pitch.conf")
    read -r -a kopts <<< "${feat_opts[$kind]:-}"
    run_py -m steps_py.features.compute --data "$data/train" "$data/dev" "$data/test" --kind "$kind" \
      ${fopts[@]+"${fopts[@]}"} ${kopts[@]+"${kopts[@]}"} --nj "$nj" --cmd "$job_cmd" $force
  done
fi

# The networks' targets and graph: run.conf's nnet_gmm (mono or tri1); by default tri1's when
# run.conf sets tri_opts, else the monophone's; with --ali-dir, the Kaldi experiment's.
gmm_sys=mono; [ -z "$tri_opts" ] || gmm_sys=tri1
[ -z "$nnet_gmm" ] || gmm_sys=$nnet_gmm
graph=$exp/$gmm_sys/graph
[ -z "$ali_dir" ] || graph=$exp/kaldi_ali/graph
if stage_on 4 && [ -n "$ali_dir" ]; then
  log "stage 4: no GMM training: the networks train on Kaldi's alignments in $ali_dir; HCLG from its final.mdl"
  run_py -m steps_py.decode.graph --lang "${ali_lang_test:-$data/lang_test}" --model "$ali_dir" --out "$graph" $force
elif stage_on 4; then
  log "stage 4: monophone GMM-HMM, alignments of train and dev, HCLG"
  run_py -m steps_py.gmm.train_mono --data "$data/train" --lang "$data/lang" --out "$exp/mono" --nj "$nj" "${gmm_args[@]}" $force
  for s in train dev; do
    run_py -m steps_py.gmm.align --data "$data/$s" --lang "$data/lang" --model "$exp/mono" --out "$exp/mono_ali/$s" \
      --nj "$nj" --cmd "$job_cmd" "${align_args[@]}" $force
  done
  run_py -m steps_py.decode.graph --lang "$data/lang_test" --model "$exp/mono" --out "$exp/mono/graph" $force
  if [ -n "$tri_opts" ]; then
    log "stage 4: triphone GMM-HMM tri1 (tree from the monophone alignments, deltas), alignments of train and dev, HCLG"
    run_py -m steps_py.gmm.train_tri --data "$data/train" --lang "$data/lang" --ali "$exp/mono_ali/train" \
      --ali-model "$exp/mono" --out "$exp/tri1" --nj "$nj" "${tri_args[@]}" $force
    for s in train dev; do
      run_py -m steps_py.gmm.align --data "$data/$s" --lang "$data/lang" --model "$exp/tri1" --out "$exp/tri1_ali/$s" \
        --nj "$nj" "${align_args[@]}" $force
    done
    run_py -m steps_py.decode.graph --lang "$data/lang_test" --model "$exp/tri1" --out "$exp/tri1/graph" $force
  fi
  if [ "$corpus" = digits ]; then
    log "stage 4 (digits): HCLG of Kaldi's final.mdl; frame agreement of the project's train alignments with Kaldi's"
    run_py -m steps_py.decode.graph --lang "$data/lang_test" --model "$corpus_dir/kaldi_exp_mono" \
      --out "$kaldi_gmm/graph" $force
    run_py -m local.digits.ali_agreement --ali "$exp/mono_ali/train" --model "$exp/mono" \
      --kaldi-exp "$corpus_dir/kaldi_exp_mono" --out "$exp/mono_ali/train/kaldi_agreement.json"
  fi
fi

if stage_on 5; then
  # the project's GMM, or with --ali-dir the Kaldi experiment's own model (exp/kaldi_ali)
  gmm_models=("$exp/mono"); gmm_dirs=("$exp/mono"); gmm_graphs=("$exp/mono/graph")
  [ -z "$tri_opts" ] || { gmm_models+=("$exp/tri1"); gmm_dirs+=("$exp/tri1"); gmm_graphs+=("$exp/tri1/graph"); }
  [ -z "$ali_dir" ] || { gmm_models=("$ali_dir"); gmm_dirs=("$exp/kaldi_ali"); gmm_graphs=("$graph"); }
  # digits: also Kaldi's own model (trained by Kaldi on all 7 speakers: dev and test are its training data)
  [ "$corpus" != digits ] || { gmm_models+=("$corpus_dir/kaldi_exp_mono"); gmm_dirs+=("$kaldi_gmm"); gmm_graphs+=("$kaldi_gmm/graph"); }
  for i in "${!gmm_models[@]}"; do
    gmm_model=${gmm_models[$i]}; gmm_dir=${gmm_dirs[$i]}
    log "stage 5: GMM lattice decoding of dev and test with $gmm_model (LM weight and insertion penalty chosen on dev)"
    run_py -m steps_py.decode.gmm --model "$gmm_model" --graph "${gmm_graphs[$i]}" --data "$data/dev" \
      --out "$gmm_dir/decode_dev" --nj "$nj" --cmd "$job_cmd" "${gmm_decode_args[@]}" $force
    run_py -m steps_py.decode.gmm --model "$gmm_model" --graph "${gmm_graphs[$i]}" --data "$data/test" \
      --out "$gmm_dir/decode_test" --lm-weight-from "$gmm_dir/decode_dev" --nj "$nj" --cmd "$job_cmd" "${gmm_decode_args[@]}" $force
    log "GMM ($(basename "$gmm_dir")) dev  $(cat "$gmm_dir/decode_dev/cer") at LM weight $(cat "$gmm_dir/decode_dev/best_lmwt"), penalty $(cat "$gmm_dir/decode_dev/best_wip")"
    log "GMM ($(basename "$gmm_dir")) test $(cat "$gmm_dir/decode_test/cer")"
  done
fi

if stage_on 6; then
  log "stage 6: training examples (shuffled shards any number of workers can share)"
  for i in "${!ali_tags[@]}"; do for m in "${egs_list[@]}"; do
    read -r -a opts <<< "${egs_opts[$m]}"
    ali_args=(--ali "$exp/${gmm_sys}_ali/train" --dev-ali "$exp/${gmm_sys}_ali/dev")
    [ -z "${ali_dirs[$i]}" ] || ali_args=(--ali-dir "${ali_dirs[$i]}")
    run_py -m steps_py.nnet.egs --feats "$data/train" "${ali_args[@]}" \
      --dev-feats "$data/dev" --model-type "$m" --out "$(egs_dir "$m" "${ali_tags[$i]}")" "${opts[@]}" $force
  done; done
fi

if stage_on 7; then
  log "stage 7: parallel training: $train_runs"
  for a in "${ali_tags[@]}"; do for r in "${runs[@]}"; do for sd in "${seed_list[@]}"; do
    IFS=: read -r m sync n <<< "$r"
    d=$(run_dir "$m" "$sync" "$n" "$sd" "$a"); egs=$(egs_dir "$m" "$a")
    read -r -a mopts <<< "${train_opts[$m]}"
    read -r -a sopts <<< "${sync_opts[$sync]:-}"
    redo=$force
    if [ -z "$force" ]; then  # skip a finished run unless its examples were remade since
      rc=0; python -m steps_py.fileio is-current "$d/final" "$egs" || rc=$?
      case $rc in
        0) log "  $d: already trained, skipping (use --force to retrain)"; continue ;;
        3) log "  $d: its examples $egs were remade since it was trained; retraining from scratch"; redo=--force ;;
      esac
    fi
    # An unfinished run continues from its last checkpoint (--no-resume: from scratch).
    resume_opt=$resume; [ -z "$redo" ] || resume_opt=""
    log "  $d: $m, --sync $sync, $n workers${resume_opt:+ (resuming from its last checkpoint if it has one)}"
    launch_training "$n" --egs "$egs" --exp-dir "$d" --sync "$sync" --seed "$sd" \
      "${mopts[@]}" "${sopts[@]}" "${ema_args[@]}" $resume_opt $redo
    python -m steps_py.fileio record-inputs "$d/final" "$egs"
  done; done; done
fi

if stage_on 8; then
  log "stage 8: decoding of every final model (global and each EMA), all in one worker pool per set ($nnet_decode_opts); LM weight (with lattices, and penalty) chosen on dev"
  for a in "${ali_tags[@]}"; do  # one pool per alignment source: its networks have its model's pdfs and graph
  agraph=$graph; [ -z "$a" ] || agraph=$kaldi_gmm/graph
  models=(); dev_dirs=(); test_dirs=(); bundles=()
  for r in "${runs[@]}"; do for sd in "${seed_list[@]}"; do
    IFS=: read -r m sync n <<< "$r"
    d=$(run_dir "$m" "$sync" "$n" "$sd" "$a")
    for model in "$d"/final/*.safetensors; do
      [ -f "$model" ] || { log "  $d has no final models; run stage 7 first"; exit 1; }
      tag=$(basename "$model" .safetensors)
      models+=("$model"); dev_dirs+=("$d/decode_${tag}_dev"); test_dirs+=("$d/decode_${tag}_test"); bundles+=("$d/bundle_${tag}")
    done
  done; done
  run_py -m steps_py.decode.nnet --model "${models[@]}" --graph "$agraph" --data "$data/dev" \
    --out "${dev_dirs[@]}" --log-file "$exp/log/decode_nnet${a:+_$a}_dev.log" --nj "$nj" --cmd "$job_cmd" "${nnet_decode_args[@]}" $force
  run_py -m steps_py.decode.nnet --model "${models[@]}" --graph "$agraph" --data "$data/test" \
    --out "${test_dirs[@]}" --lm-weight-from "${dev_dirs[@]}" --log-file "$exp/log/decode_nnet${a:+_$a}_test.log" \
    --nj "$nj" --cmd "$job_cmd" "${nnet_decode_args[@]}" $force
  # one bundle per model (network, priors, graph pointer, feature config, dev-chosen LM weight)
  # for decoding audio files directly: python -m steps_py.decode.wav --model <bundle> a.wav
  for i in "${!models[@]}"; do
    python -m steps_py.decode.bundle --model "${models[$i]}" --graph "$agraph" --dev-decode "${dev_dirs[$i]}" \
      --feats "$data/train" --out "${bundles[$i]}" $force
  done
  done
fi

if stage_on 9; then
  log "stage 9: scoreboard"
  run_py -m steps_py.score.scoreboard --exp "$exp" --out "$results"
fi

log "done in $(( $(date +%s) - t_start )) s (stages $stage..$stop_stage); log: $log_file"
exit
}
