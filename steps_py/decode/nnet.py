"""Decode a Kaldi data dir with a neural-network acoustic model through the HCLG graph.

    python -m steps_py.decode.nnet --model exp/dnn_ma_n4/final/ema-0.99.safetensors \\
        --graph exp/mono/graph --data data/dev --out exp/dnn_ma_n4/decode_ema-0.99_dev --nj 2
    python -m steps_py.decode.nnet --model exp/dnn_ma_n4/final/ema-0.99.safetensors \\
        --graph exp/mono/graph --data data/test --out exp/dnn_ma_n4/decode_ema-0.99_test \\
        --lm-weight-from exp/dnn_ma_n4/decode_ema-0.99_dev

Acoustic scores are the network's log posteriors minus the log priors stored with the
model (hybrid "scaled likelihoods"; stage 6 stores each model's own mean training posterior,
Kaldi nnet3's adjusted priors, and keeps the alignment-count priors for `--priors counts`), computed on CMVN-normalised fbank features
(`steps_py.features.io.FeatureReader(data, "fbank", cmvn=True)`), and decoded with
`steps_py.decode.wfst.WfstDecoder` at every LM weight of --lm-weights (each LM weight w is
one Viterbi pass at acoustic scale 1/w; --acoustic-scale A alone means one pass at LM
weight 1/A, Kaldi's decode-time scale 0.1 = LM weight 10). The LM weight with
the lowest CER is chosen on the set being decoded only when it is not a test set; a test
set takes it from the dev decode dir given with --lm-weight-from (its `best_lmwt`), so the
weight is never tuned on test. Utterances are split over --nj worker processes (spawned,
one torch thread each); a progress bar counts utterances.

Output dir (by `steps_py.decode.decode_dir`, each file written atomically, `.done` last;
rerunning skips a done dir unless --force): `ref.txt`, `hyp_lmwt<W>.txt` per LM weight,
`cer_lmwt.txt`, `hyp.txt` (the chosen weight), `cer` (its Kaldi line), `best_lmwt`,
`summary.json` (CER, frames, seconds, real-time factor per core, failed utterances), and
here also `scoring/per_utt`, `scoring/per_spk` and `log/decode.log`.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from steps_py.decode.decode_dir import format_weight
from steps_py.fileio import atomic_write_text, is_done, skip_done
from steps_py.log import setup_logging

log = logging.getLogger("decode.nnet")

FRAME_SHIFT_S = 0.01


class DecodeError(RuntimeError):
    """Inputs of a decode are missing or inconsistent; the message names the files and the fix."""


@dataclass(frozen=True)
class DecodeConfig:
    """Everything a worker needs to decode its utterances (picklable for spawned workers)."""

    model: Path
    graph: Path
    data: Path
    lm_weights: tuple[float, ...]
    beam: float = 13.0
    lattice_beam: float = 8.0
    max_active: int = 7000
    decoder: str = "faster"
    priors: str = "model"


@dataclass
class ChunkResult:
    hyps: dict[float, dict[str, list[int]]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    frames: int = 0
    seconds: float = 0.0
    num_utts: int = 0


# ---------------------------------------------------------------- input checks


GRAPH_FILES = ("HCLG_pdf.fst", "words.txt", "num_pdfs", "topo")


def check_graph(graph: Path) -> int:
    """Check a graph dir (HCLG_pdf.fst, words.txt, num_pdfs, topo) and return its pdf count."""
    graph = Path(graph)
    if not graph.is_dir():
        raise DecodeError(f"graph dir {graph} does not exist; build it first (stage 4, "
                          "exp/mono/graph) or pass the right --graph")
    missing = [n for n in GRAPH_FILES if not (graph / n).is_file()]
    if missing:
        raise DecodeError(f"graph dir {graph} lacks {', '.join(missing)}; rebuild it (stage 4: "
                          f"python -m steps_py.decode.graph --out {graph} --force)")
    text = (graph / "num_pdfs").read_text(encoding="utf-8").strip()
    if not text.isdigit():
        raise DecodeError(f"{graph / 'num_pdfs'}: expected one integer, found {text[:40]!r}")
    return int(text)


def read_words(path: Path) -> dict[int, str]:
    """words.txt (`<word> <id>`) as {id: word}."""
    out: dict[int, str] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].isdigit():
                raise DecodeError(f"{path}:{n}: expected '<word> <id>', found {line.strip()!r}")
            out[int(parts[1])] = parts[0]
    return out


def load_model(path: Path, priors: str = "model") -> tuple[Any, dict, np.ndarray]:
    """(model in eval mode, cfg, log priors as float32 numpy) via steps_py.nnet.model_io.

    ``priors``: ``"model"`` (the priors stored for decoding: adjusted ones for models trained
    with the default ``--priors adjusted``) or ``"counts"`` (the alignment-count priors).
    """
    from steps_py.nnet.model_io import load_acoustic_model

    if not Path(path).is_file():
        raise DecodeError(f"model {path} does not exist; train it first (stage 6) or fix --model")
    try:
        model, cfg, log_priors = load_acoustic_model(path, priors=priors)
    except ValueError as e:  # ModelFileError: names the file and the fix
        raise DecodeError(str(e)) from None
    model.eval()
    priors = np.asarray(log_priors, dtype=np.float32).reshape(-1)
    return model, cfg, priors


def model_num_pdfs(cfg: dict, log_priors: np.ndarray) -> int:
    for key in ("num_pdfs", "output_dim", "num_targets"):
        if key in cfg:
            return int(cfg[key])
    return int(log_priors.shape[0])


def check_model_vs_graph(model_path: Path, cfg: dict, log_priors: np.ndarray, graph: Path, graph_pdfs: int) -> None:
    pdfs = model_num_pdfs(cfg, log_priors)
    if log_priors.shape[0] != pdfs:
        raise DecodeError(f"model {model_path}: {pdfs} outputs but {log_priors.shape[0]} log priors; "
                          "the model file is inconsistent, re-save it")
    if pdfs != graph_pdfs:
        raise DecodeError(f"model {model_path} has {pdfs} pdfs but graph {graph / 'num_pdfs'} says "
                          f"{graph_pdfs}; decode with the graph built from the alignments the model "
                          "was trained on (or retrain on the current alignments)")


def parse_lm_weights(spec: str) -> list[float]:
    """'7:17' (integers, inclusive), '7:17:2' (with a step) or '8,10,12.5'."""
    try:
        if ":" in spec:
            parts = [float(x) for x in spec.split(":")]
            start, stop = parts[0], parts[1]
            step = parts[2] if len(parts) > 2 else 1.0
            if step <= 0 or stop < start:
                raise ValueError
            n = int(round((stop - start) / step))
            out = [round(start + i * step, 6) for i in range(n + 1)]
        else:
            out = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise DecodeError(f"--lm-weights {spec!r}: give 'START:STOP[:STEP]' or a comma list, "
                          "e.g. 7:17 or 8,10,12") from None
    if not out or any(w <= 0 for w in out):
        raise DecodeError(f"--lm-weights {spec!r}: LM weights must be positive")
    return sorted(set(out))


def read_best_lmwt(dev_dir: Path) -> float:
    p = Path(dev_dir) / "best_lmwt"
    if not p.is_file():
        raise DecodeError(f"{p} not found; decode the dev set first and pass its decode dir "
                          "with --lm-weight-from")
    try:
        return float(p.read_text(encoding="utf-8").split()[0])
    except (ValueError, IndexError):
        raise DecodeError(f"{p}: expected one number (the LM weight)") from None


def is_test_set(data: Path) -> bool:
    return re.search(r"(^|[_\-.])test($|[_\-.])", Path(data).name) is not None or Path(data).name.startswith("test")


# ---------------------------------------------------------------- worker side
# Each worker process builds the model, decoder and feature reader once (pool initializer).

_STATE: dict[str, Any] = {}


def make_decoder(cfg: DecodeConfig) -> Any:
    from steps_py.decode.wfst import WfstDecoder

    return WfstDecoder(cfg.graph, beam=cfg.beam, lattice_beam=cfg.lattice_beam, max_active=cfg.max_active,
                       decoder=cfg.decoder)


def make_feature_reader(data: Path) -> Any:
    from steps_py.features.io import FeatureReader

    return FeatureReader(data, "fbank", cmvn=True)


def init_worker(cfg: DecodeConfig, threads: int = 1) -> None:
    """Pool initializer. It never raises (a raising initializer makes multiprocessing respawn
    workers forever); the error is kept and raised by the first `decode_chunk`."""
    import torch

    torch.set_num_threads(threads)
    _STATE.clear()
    try:
        model, _, priors = load_model(cfg.model, cfg.priors)
        _STATE.update(cfg=cfg, model=model, priors=priors, decoder=make_decoder(cfg),
                      reader=make_feature_reader(cfg.data))
    except Exception as e:  # noqa: BLE001 - reported by decode_chunk in the parent
        _STATE["init_error"] = f"decoding worker could not start: {type(e).__name__}: {e}"


def acoustic_scores(model: Any, feats: np.ndarray, log_priors: np.ndarray) -> np.ndarray:
    """log p(pdf | x) - log p(pdf): (T, num_pdfs) float32 pseudo log-likelihoods."""
    import torch

    with torch.inference_mode():
        lp = model.log_posteriors(torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)))
    return (lp.float().cpu().numpy() - log_priors[None, :]).astype(np.float32)


def decode_chunk(utts: list[str]) -> ChunkResult:
    """Decode utterances with the worker's state; failures are recorded, never raised."""
    st = _STATE
    if "init_error" in st:
        raise DecodeError(st["init_error"])
    res = ChunkResult(hyps={w: {} for w in st["cfg"].lm_weights}, num_utts=len(utts))
    t0 = time.perf_counter()
    for utt in utts:
        try:
            feats = st["reader"][utt]
            loglikes = acoustic_scores(st["model"], feats, st["priors"])
            best = st["decoder"].decode_loglikes(loglikes, list(st["cfg"].lm_weights))
        except Exception as e:  # noqa: BLE001 - one bad utterance must not stop the job
            res.failed[utt] = f"{type(e).__name__}: {e}"
            continue
        res.frames += int(feats.shape[0])
        lost = [w for w in st["cfg"].lm_weights if best.get(w) is None]
        if lost:
            res.failed[utt] = f"decoder returned no path at LM weight(s) {', '.join(f'{w:g}' for w in lost)}"
            continue
        for w in st["cfg"].lm_weights:
            res.hyps[w][utt] = [int(i) for i in best[w]]
    res.seconds = time.perf_counter() - t0
    return res


# ---------------------------------------------------------------- driver


def split_chunks(utts: list[str], size: int) -> list[list[str]]:
    return [utts[i:i + size] for i in range(0, len(utts), size)]


def run_decode(cfg: DecodeConfig, utts: list[str], nj: int) -> ChunkResult:
    """Decode `utts` over `nj` processes (in this process when nj == 1)."""
    from tqdm import tqdm

    chunk = max(1, min(20, len(utts) // (4 * nj) or 1))
    chunks = split_chunks(utts, chunk)
    total = ChunkResult(hyps={w: {} for w in cfg.lm_weights})
    bar = tqdm(total=len(utts), desc="decode", unit="utt", mininterval=2.0)

    def merge(r: ChunkResult) -> None:
        for w, h in r.hyps.items():
            total.hyps[w].update(h)
        total.failed.update(r.failed)
        total.frames += r.frames
        total.seconds += r.seconds
        total.num_utts += r.num_utts
        bar.update(r.num_utts)

    try:
        if nj <= 1:
            init_worker(cfg)
            for c in chunks:
                merge(decode_chunk(c))
        else:
            ctx = mp.get_context("spawn")
            with ctx.Pool(nj, initializer=init_worker, initargs=(cfg,)) as pool:
                for r in pool.imap_unordered(decode_chunk, chunks):
                    merge(r)
    finally:
        bar.close()
    return total


def write_outputs(out: Path, ref: dict[str, str], hyps: dict[float, dict[str, str]],
                  lm_weight_from: Path | None, info: dict[str, Any]) -> float:
    """Write the decode dir with `steps_py.decode.decode_dir` (scores every LM weight, picks
    one on dev or takes `lm_weight_from`'s, `.done` last), plus scoring/per_utt and per_spk."""
    from steps_py.decode.decode_dir import write_decode_dir
    from steps_py.score.cer import format_per_speaker, format_per_utt, per_speaker

    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("hyp_lmwt*.txt"):
        stale.unlink()  # from an earlier run with other LM weights
    utt2spk_path = info.get("utt2spk")
    best, res = write_decode_dir(out, ref, hyps, lm_weight_from=lm_weight_from, extra_info=info)
    utt2spk = None
    if utt2spk_path and Path(utt2spk_path).is_file():
        from steps_py.data.kaldi_dir import read_kaldi_map

        utt2spk = read_kaldi_map(Path(utt2spk_path))
    atomic_write_text(out / "scoring" / "per_utt", format_per_utt(res))
    atomic_write_text(out / "scoring" / "per_spk", format_per_speaker(per_speaker(res, utt2spk)))
    return best


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m steps_py.decode.nnet", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="acoustic model .safetensors (global or ema-<decay>)")
    p.add_argument("--graph", type=Path, default=Path("exp/mono/graph"), help="graph dir (stage 4) with HCLG_pdf.fst, words.txt, num_pdfs, topo")
    p.add_argument("--data", type=Path, required=True, help="Kaldi data dir with text and fbank features")
    p.add_argument("--out", type=Path, required=True, help="decode dir, e.g. exp/<run>/decode_<tag>_<set>")
    p.add_argument("--nj", type=int, default=2, help="parallel decoding processes (default 2)")
    p.add_argument("--lm-weights", default="7:17:2",
                   help="LM weights to try on dev, one decoding pass each: START:STOP[:STEP] or a "
                        "comma list (default 7:17:2 = 7,9,...,17)")
    p.add_argument("--lm-weight-from", type=Path, default=None,
                   help="dev decode dir whose best_lmwt is used (required for test sets)")
    p.add_argument("--acoustic-scale", type=float, default=None,
                   help="decode once at this acoustic scale (= LM weight 1/A, e.g. 0.1 -> 10) "
                        "instead of sweeping --lm-weights")
    p.add_argument("--beam", type=float, default=13.0, help="search beam (default 13)")
    p.add_argument("--lattice-beam", type=float, default=8.0, help="lattice beam (default 8)")
    p.add_argument("--max-active", type=int, default=7000, help="max active tokens per frame (default 7000)")
    p.add_argument("--decoder", choices=["faster", "lattice"], default="faster",
                   help="search: Kaldi's FasterDecoder (default) or LatticeFasterDecoder (same best path "
                        "within the beam, about 3x slower; see steps_py/decode/wfst.py)")
    p.add_argument("--priors", choices=["model", "counts"], default="model",
                   help="log priors to divide by: the model file's decoding priors (its own mean "
                        "posterior for models trained with --priors adjusted) or the alignment-count "
                        "priors kept beside them (default %(default)s)")
    p.add_argument("--max-utts", type=int, default=0, help="decode only the first N utterances (0 = all)")
    p.add_argument("--force", action="store_true", help="decode again even if --out is done")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if is_done(args.out) and not args.force:
        setup_logging("decode.nnet")
        skip_done(args.out, args.force, "already decoded")
        return 0
    (args.out / ".done").unlink(missing_ok=True)
    setup_logging("decode.nnet", args.out / "log" / "decode.log")
    try:
        return _decode(args)
    except DecodeError as e:
        log.error("%s", e)
        return 1


def _decode(args: argparse.Namespace) -> int:
    from steps_py.score.cer import ScoreError, read_text

    graph_pdfs = check_graph(args.graph)
    words = read_words(args.graph / "words.txt")
    _, mcfg, priors = load_model(args.model, args.priors)
    check_model_vs_graph(args.model, mcfg, priors, args.graph, graph_pdfs)
    if args.nj < 1:
        raise DecodeError(f"--nj must be >= 1, not {args.nj}")
    if args.lm_weight_from is not None:
        lm_weights = [read_best_lmwt(args.lm_weight_from)]
        log.info("LM weight %g taken from %s", lm_weights[0], args.lm_weight_from)
    else:
        if is_test_set(args.data):
            raise DecodeError(f"{args.data} looks like a test set: the LM weight is never chosen on "
                              "test; pass --lm-weight-from <dev decode dir>")
        if args.acoustic_scale is not None:
            if args.acoustic_scale <= 0:
                raise DecodeError(f"--acoustic-scale must be positive, not {args.acoustic_scale}")
            lm_weights = [round(1.0 / args.acoustic_scale, 6)]
        else:
            lm_weights = parse_lm_weights(args.lm_weights)
    if not (args.data / "text").is_file():
        raise DecodeError(f"{args.data}/text not found; --data must be a Kaldi data dir with a text file")
    try:
        ref = read_text(args.data / "text")
    except ScoreError as e:
        raise DecodeError(str(e)) from None
    try:
        reader = make_feature_reader(args.data)
    except (FileNotFoundError, ValueError, OSError) as e:
        raise DecodeError(f"{args.data}: cannot read fbank features ({e}); run stage 3 "
                          f"(python -m steps_py.features.compute --data {args.data} --kind fbank)") from None
    if "feat_dim" in mcfg and int(mcfg["feat_dim"]) != int(reader.dim):
        raise DecodeError(f"model {args.model} expects {mcfg['feat_dim']}-dim features but "
                          f"{args.data}/fbank has {reader.dim}; extract fbank as for training")
    have = set(reader.utts)
    utts = sorted(u for u in ref if u in have)
    no_feats = sorted(set(ref) - have)
    if no_feats:
        log.warning("%d utterance(s) of %s/text have no fbank features (scored as deletions): %s",
                    len(no_feats), args.data, " ".join(no_feats[:10]))
    if args.max_utts > 0:
        utts = utts[:args.max_utts]
        ref = {u: ref[u] for u in utts}
    if not utts:
        raise DecodeError(f"{args.data}: no utterance has both a transcript and fbank features")
    cfg = DecodeConfig(model=args.model, graph=args.graph, data=args.data,
                       lm_weights=tuple(lm_weights), beam=args.beam, lattice_beam=args.lattice_beam,
                       max_active=args.max_active, decoder=args.decoder, priors=args.priors)
    try:
        make_decoder(cfg)  # surfaces graph problems here, not in every worker
    except ValueError as e:  # GraphError
        raise DecodeError(str(e)) from None
    log.info("decoding %d utterances of %s with %s, %d job(s), LM weights %s",
             len(utts), args.data, args.model, args.nj, ",".join(format_weight(w) for w in lm_weights))
    t0 = time.perf_counter()
    res = run_decode(cfg, utts, args.nj)
    wall = time.perf_counter() - t0
    if res.failed:
        log.warning("%d utterance(s) failed to decode (scored as deletions): %s", len(res.failed),
                    "; ".join(f"{u}: {m}" for u, m in list(res.failed.items())[:5]))
    unknown = {i for h in res.hyps.values() for ids in h.values() for i in ids if i not in words}
    if unknown:
        raise DecodeError(f"decoder produced word ids {sorted(unknown)[:10]} missing from {args.graph / 'words.txt'}")
    hyps = {w: {u: " ".join(words[i] for i in ids) for u, ids in h.items()} for w, h in res.hyps.items()}
    audio_s = res.frames * FRAME_SHIFT_S
    info = {"model": str(args.model), "graph": str(args.graph), "data": str(args.data), "nj": args.nj,
            "utterances": len(utts), "failed": res.failed, "no_features": no_feats, "frames": res.frames,
            "audio_s": audio_s, "decode_cpu_s": res.seconds, "wall_s": wall,
            "rtf_per_core": res.seconds / audio_s if audio_s else None,
            "beam": args.beam, "lattice_beam": args.lattice_beam, "max_active": args.max_active,
            "decoder": args.decoder, "priors": args.priors,
            "utt2spk": str(args.data / "utt2spk")}
    best = write_outputs(args.out, ref, hyps, args.lm_weight_from, info)
    line = (args.out / "cer").read_text(encoding="utf-8").strip()
    log.info("%s (LM weight %s) -> %s; RTF per core %.4f", line, format_weight(best), args.out,
             info["rtf_per_core"] or float("nan"))
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
