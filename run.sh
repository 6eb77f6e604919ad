#!/usr/bin/env bash
# The whole recipe, top to bottom (Kaldi/icefall conventions).
#
#   ./run.sh                                # everything on the embedded synthetic corpus
#   ./run.sh --stage 4 --stop-stage 4       # one stage
#   ./run.sh --corpus aishell --corpus-dir /data/aishell
#   ./run.sh --corpus kaldi --corpus-dir /data/mydirs   # holds train/ dev/ test/ Kaldi dirs
#
# Stages: 0 corpus | 1 data dirs | 2 lang + LM | 3 features | 4 GMM-HMM, alignments, graph,
# GMM decode | 5 training examples | 6 parallel training | 7 decoding | 8 scoreboard.
# Every stage skips work that is already done (and says so); --force redoes it.
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=8
corpus=synth
corpus_dir=""
nj=2
conf_dir=""
force=""
seed=0
seeds=""
workdir=.

usage() {
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
  cat <<USAGE
Options:
  --stage N           first stage to run (default $stage)
  --stop-stage M      last stage to run (default $stop_stage)
  --corpus NAME       synth | aishell | kaldi (default $corpus)
  --corpus-dir DIR    where the corpus lives (synth: where to write it; default corpus/<corpus>)
  --conf-dir DIR      configs (default egs/<corpus>/conf)
  --nj N              parallel jobs for data, features, GMM and decoding (default $nj)
  --seed S            seed for corpus synthesis and training (default $seed)
  --seeds "S1 S2 .."  train (and decode) every run once per seed, in exp/<run>_seed<S>;
                      the scoreboard then gives mean and spread (default: just --seed)
  --workdir DIR       where corpus/, data/, exp/, results/ and logs/ go (default .)
  --force             redo stages even if their outputs exist
  -h, --help          this text
USAGE
}

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage="$2"; shift 2 ;;
    --stop-stage|--stop_stage) stop_stage="$2"; shift 2 ;;
    --corpus) corpus="$2"; shift 2 ;;
    --corpus-dir) corpus_dir="$2"; shift 2 ;;
    --conf-dir) conf_dir="$2"; shift 2 ;;
    --nj) nj="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --seeds) seeds="$2"; shift 2 ;;
    --force) force="--force"; shift ;;
    --workdir) workdir="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

case "$corpus" in synth|aishell|kaldi) ;; *) echo "run.sh: --corpus must be synth, aishell or kaldi, not '$corpus'" >&2; exit 2 ;; esac
[[ "$stage" =~ ^[0-9]+$ && "$stop_stage" =~ ^[0-9]+$ && "$nj" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --stage, --stop-stage and --nj take non-negative integers (nj >= 1)" >&2; exit 2; }
[ -n "$corpus_dir" ] || corpus_dir="$workdir/corpus/$corpus"
data="$workdir/data"; exp="$workdir/exp"; results="$workdir/results"
[ -n "$conf_dir" ] || conf_dir="egs/$corpus/conf"
if [ "$corpus" != synth ] && [ ! -d "$corpus_dir" ]; then
  echo "run.sh: --corpus-dir '$corpus_dir' does not exist; point it at your $corpus corpus" >&2; exit 2
fi
[ -f "$conf_dir/run.conf" ] || { echo "run.sh: no $conf_dir/run.conf; copy egs/synth/conf/run.conf and edit it" >&2; exit 2; }

mkdir -p "$workdir/logs"
log_file="$workdir/logs/run-$(date +%Y%m%d-%H%M%S).log"
exec > >(tee -a "$log_file") 2>&1
log() { echo "$(date '+%Y-%m-%d %H:%M:%S') (run.sh:${BASH_LINENO[0]}) $*"; }
log "log file: $log_file"

. ./path.sh
# shellcheck disable=SC1090
. "$conf_dir/run.conf"
t_start=$(date +%s)

stage_on() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

pinyin_lexicon="$data/local/lexicon_pinyin.txt"  # the Mandarin corpora's pronunciation lexicon

if stage_on 0; then
  log "stage 0: corpus ($corpus)"
  case "$corpus" in
    synth) python -m local.synth --out-dir "$corpus_dir" --config "$conf_dir/corpus.json" \
             --seed "$seed" --nj "$nj" $force ;;
    aishell) python -m local.aishell.prepare --corpus-dir "$corpus_dir" --out "$data/local/aishell" \
               --nj "$nj" $force ;;
    kaldi) log "Kaldi data dirs are read from $corpus_dir/{train,dev,test} by stage 1" ;;
  esac
fi

if stage_on 1; then
  log "stage 1: pronunciation lexicon and checked Kaldi data dirs in $data/"
  python -m local.mandarin.lexicon --out "$pinyin_lexicon" $force
  case "$corpus" in
    synth) src=(--manifests "$corpus_dir/manifests" --lm-text "$corpus_dir/lm_text.txt") ;;
    aishell) src=(--manifests "$data/local/aishell/manifests") ;;
    kaldi) src=(--kaldi-dirs "$corpus_dir") ;;
  esac
  # audio must meet the feature config (sample rate, channel); default 16 kHz mono
  [ -f "$conf_dir/mfcc.conf" ] && src+=(--audio-conf "$conf_dir/mfcc.conf")
  python -m steps_py.data.prepare "${src[@]}" --lexicon "$pinyin_lexicon" --out "$data" --nj "$nj" $force
fi

if stage_on 2; then
  log "stage 2: dict dir, $data/lang, ${lm_order}-gram LM, $data/lang_test/G.fst"
  python -m local.mandarin.prepare_dict --data "$data" --lexicon "$pinyin_lexicon" --out "$data/local/dict" $force
  python -m steps_py.lang.prepare --dict-dir "$data/local/dict" --out "$data/lang" $force
  python -m steps_py.lang.lm --data "$data" --lang "$data/lang" --out "$data/lang_test" --order "$lm_order" $force
fi

if stage_on 3; then
  log "stage 3: MFCC (GMM) and fbank (networks) features with CMVN stats"
  for kind in mfcc fbank; do
    # Kaldi feature configs, as make_mfcc.sh / make_mfcc_pitch.sh: $conf_dir/{mfcc,fbank,pitch}.conf
    fopts=()
    [ -f "$conf_dir/$kind.conf" ] && fopts+=(--conf "$conf_dir/$kind.conf")
    [ -f "$conf_dir/pitch.conf" ] && fopts+=(--pitch-conf "$conf_dir/pitch.conf")
    eval "kopts=\${feat_opts_$kind:-}"
    python -m steps_py.features.compute --data "$data/train" "$data/dev" "$data/test" --kind "$kind" \
      ${fopts[@]+"${fopts[@]}"} $kopts --nj "$nj" $force
  done
fi

if stage_on 4; then
  log "stage 4: monophone GMM-HMM, alignments, HCLG, GMM decoding"
  python -m steps_py.gmm.train_mono --data $data/train --lang $data/lang --out $exp/mono --nj "$nj" $gmm_opts $force
  for s in train dev; do
    python -m steps_py.gmm.align --data "$data/$s" --lang $data/lang --model $exp/mono --out "$exp/mono_ali/$s" --nj "$nj" ${align_opts:-} $force
  done
  python -m steps_py.decode.graph --lang $data/lang_test --model $exp/mono --out $exp/mono/graph $force
  python -m steps_py.decode.gmm --model $exp/mono --graph $exp/mono/graph --data $data/dev \
    --out $exp/mono/decode_dev --nj "$nj" $gmm_decode_opts $force
  python -m steps_py.decode.gmm --model $exp/mono --graph $exp/mono/graph --data $data/test \
    --out $exp/mono/decode_test --lm-weight-from $exp/mono/decode_dev --nj "$nj" $gmm_decode_opts $force
  log "GMM (mono) dev  $(cat $exp/mono/decode_dev/cer) at LM weight $(cat $exp/mono/decode_dev/best_lmwt)"
  log "GMM (mono) test $(cat $exp/mono/decode_test/cer)"
fi

if stage_on 5; then
  log "stage 5: training examples (shuffled shards any number of workers can share)"
  for m in $egs_types; do
    eval "opts=\${egs_opts_$m}"
    python -m steps_py.nnet.egs --feats $data/train --ali $exp/mono_ali/train \
      --dev-feats $data/dev --dev-ali $exp/mono_ali/dev --model-type "$m" --out "$exp/egs/$m" $opts $force
  done
fi

# A training run is model:sync:workers; see $conf_dir/run.conf. With several --seeds each
# run is repeated per seed in its own dir.
[ -n "$seeds" ] || seeds="$seed"
n_seeds=$(echo $seeds | wc -w)
run_dir() { if [ "$n_seeds" -gt 1 ]; then echo "$exp/${1}_${2}_n${3}_seed${4}"; else echo "$exp/${1}_${2}_n${3}"; fi; }

if stage_on 6; then
  log "stage 6: parallel training: $train_runs"
  for r in $train_runs; do for sd in $seeds; do
    IFS=: read -r m sync n <<< "$r"
    d=$(run_dir "$m" "$sync" "$n" "$sd")
    eval "mopts=\${train_opts_$m}"
    eval "sopts=\${sync_opts_${sync//-/_}:-}"
    if [ -f "$d/final/global.safetensors" ] && [ -z "$force" ]; then
      log "  $d: already trained, skipping (use --force to retrain)"; continue
    fi
    log "  $d: $m, --sync $sync, $n workers"
    if [ "$n" -gt 1 ] && [ "${launcher:-torchrun}" = torchrun ]; then
      torchrun --standalone --nnodes 1 --nproc_per_node "$n" -m steps_py.parallel.train \
        --egs "$exp/egs/$m" --exp-dir "$d" --sync "$sync" --seed "$sd" $mopts $sopts $ema_opts $force
    elif [ "$n" -gt 1 ]; then
      python -m steps_py.parallel.train --simulate "$n" \
        --egs "$exp/egs/$m" --exp-dir "$d" --sync "$sync" --seed "$sd" $mopts $sopts $ema_opts $force
    else
      python -m steps_py.parallel.train \
        --egs "$exp/egs/$m" --exp-dir "$d" --sync "$sync" --seed "$sd" $mopts $sopts $ema_opts $force
    fi
  done; done
fi

if stage_on 7; then
  log "stage 7: decoding every final model (global and each EMA); LM weight chosen on dev"
  for r in $train_runs; do for sd in $seeds; do
    IFS=: read -r m sync n <<< "$r"
    d=$(run_dir "$m" "$sync" "$n" "$sd")
    for model in "$d"/final/*.safetensors; do
      [ -f "$model" ] || { log "  $d has no final models; run stage 6 first"; exit 1; }
      tag=$(basename "$model" .safetensors)
      python -m steps_py.decode.nnet --model "$model" --graph $exp/mono/graph --data $data/dev \
        --out "$d/decode_${tag}_dev" --nj "$nj" $nnet_decode_opts $force
      python -m steps_py.decode.nnet --model "$model" --graph $exp/mono/graph --data $data/test \
        --out "$d/decode_${tag}_test" --lm-weight-from "$d/decode_${tag}_dev" --nj "$nj" $nnet_decode_opts $force
    done
  done; done
fi

if stage_on 8; then
  log "stage 8: scoreboard"
  python -m steps_py.score.scoreboard --exp "$exp" --out "$results"
fi

log "done in $(( $(date +%s) - t_start )) s (stages $stage..$stop_stage); log: $log_file"
