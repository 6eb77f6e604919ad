"""Decode a data dir with a GMM on HCLG (Kaldi's steps/decode.sh in Python), then score.

    python -m steps_py.decode.gmm --model exp/mono --graph exp/mono/graph --data data/dev --out exp/mono/decode_dev --nj 2
    python -m steps_py.decode.gmm --model exp/mono --graph exp/mono/graph --data data/test --out exp/mono/decode_test \
        --lm-weight-from exp/mono/decode_dev

Decodes once per LM weight (acoustic scale 1/W), writes the decode dir (see
steps_py.decode.decode_dir): the LM weight is chosen on dev, test reuses dev's.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from steps_py.data.kaldi_dir import read_kaldi_map
from steps_py.decode.decode_dir import read_best_lmwt, write_decode_dir
from steps_py.decode.wfst import WfstDecoder
from steps_py.fileio import skip_done
from steps_py.gmm.feats import add_deltas
from steps_py.gmm.model_io import read_model
from steps_py.log import setup_logging

log = logging.getLogger("decode_gmm")

_SHARED: dict = {}  # filled before forking the decoding workers


def _decode_share(args: tuple[int, int]) -> dict[str, dict[float, list[str]]]:
    job, nj = args
    s = _SHARED
    dec = WfstDecoder(s["graph"], beam=s["beam"], lattice_beam=s["lattice_beam"], max_active=s["max_active"],
                      decoder=s["decoder"])
    _, _, tm, am = read_model(s["model"]).build()
    utts = s["utts"][job::nj]
    out: dict[str, dict[float, list[str]]] = {}
    for utt in tqdm(utts, desc=f"decode job {job}", unit="utt", disable=job != 0, leave=False):
        res = dec.decode_gmm(s["feats"][utt], tm, am, s["lm_weights"], utt)
        out[utt] = {w: dec.words_of(ids) for w, ids in res.items()}
    return out


def decode_all(graph: Path, model: Path, feats: dict[str, np.ndarray], lm_weights: list[float], nj: int,
               beam: float = 13.0, lattice_beam: float = 8.0, max_active: int = 7000,
               decoder: str = "faster") -> dict[float, dict[str, str]]:
    """utt -> transcript per LM weight, over `nj` forked processes."""
    _SHARED.update(graph=graph, model=model, feats=feats, utts=sorted(feats), lm_weights=lm_weights,
                   beam=beam, lattice_beam=lattice_beam, max_active=max_active, decoder=decoder)
    nj = max(1, min(nj, len(feats)))
    if nj == 1:
        parts = [_decode_share((0, 1))]
    else:
        with mp.get_context("fork").Pool(nj) as pool:
            parts = pool.map(_decode_share, [(j, nj) for j in range(nj)])
    hyps: dict[float, dict[str, str]] = {w: {} for w in lm_weights}
    for part in parts:
        for utt, per_w in part.items():
            for w, words in per_w.items():
                hyps[w][utt] = " ".join(words)
    return hyps


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("exp/mono"))
    ap.add_argument("--graph", type=Path, default=Path("exp/mono/graph"))
    ap.add_argument("--data", type=Path, default=Path("data/dev"))
    ap.add_argument("--out", type=Path, default=Path("exp/mono/decode_dev"))
    ap.add_argument("--nj", type=int, default=2)
    ap.add_argument("--lm-weights", type=str, default="12,14,16", help="comma-separated LM weights to try (dev)")
    ap.add_argument("--lm-weight-from", type=Path, default=None, help="decode dir whose best_lmwt to reuse (test)")
    ap.add_argument("--beam", type=float, default=11.0)
    ap.add_argument("--lattice-beam", type=float, default=8.0)
    ap.add_argument("--max-active", type=int, default=7000)
    ap.add_argument("--decoder", choices=["faster", "lattice"], default="faster",
                    help="Kaldi's FasterDecoder (default) or LatticeFasterDecoder; see steps_py/decode/wfst.py")
    ap.add_argument("--force", action="store_true", help="decode again even if --out is done")
    args = ap.parse_args(argv)
    setup_logging("decode_gmm", args.out / "log" / "decode.log")
    if skip_done(args.out, args.force, "already decoded"):
        return
    t0 = time.time()
    weights = [read_best_lmwt(args.lm_weight_from)] if args.lm_weight_from else [float(x) for x in args.lm_weights.split(",")]
    from steps_py.gmm.feats import open_mfcc

    reader = open_mfcc(args.data)
    text = read_kaldi_map(args.data / "text", allow_empty_value=True)
    have = set(reader.utts)
    missing = sorted(set(text) - have)
    if missing:
        log.warning("%d utterances of %s have no features and count as deletions, e.g. %s", len(missing), args.data, missing[:5])
    feats = {u: add_deltas(reader[u]) for u in tqdm(sorted(set(text) & have), desc="load feats", leave=False)}
    hyps = decode_all(args.graph, args.model, feats, weights, args.nj, args.beam, args.lattice_beam, args.max_active,
                      args.decoder)
    frames = sum(len(x) for x in feats.values())
    secs = time.time() - t0
    best, res = write_decode_dir(args.out, text, hyps, args.lm_weight_from,
                                 {"decoder": f"gmm/{args.decoder}", "utterances": len(feats), "seconds": round(secs, 1), "rtf": round(secs / max(frames / 100.0, 1e-9), 4)})
    log.info("%s: %s (LM weight %g%s); %d utts in %.1f s", args.data, res.line(), best,
             f" from {args.lm_weight_from}" if args.lm_weight_from else " chosen here", len(feats), secs)


if __name__ == "__main__":
    main()
