"""Decoding speed: real-time factor (RTF) per core of the NN decode, search and network apart.

    python benchmarks/bench_decode.py --graph exp/mono/graph --data data/dev \\
        --model exp/dnn_ma_n4/final/ema-0.99.safetensors [--utts 50] [--lm-weights 10]

One process, one torch thread (so the numbers are per core). For each utterance it times
the network forward (log posteriors - log priors) and the WFST search
(`WfstDecoder.decode_loglikes`) and reports RTF = seconds / audio seconds (10 ms frames)
for each and in total; the target for the total is <= 0.05. Without --model (or --data)
the acoustic scores are synthetic and NN-like: a random path through HCLG_pdf.fst gives
each frame's pdf, which scores about -0.5 while all others score about -12; the search
only is timed, and `synthetic_path_wer` (decoded words vs the walked path's words, in %)
shows how many search errors the beam settings cause. Needs the
decoding graph from stage 4 (exp/mono/graph); `--toy-graph DIR` instead builds the 3-word
toy graph of `steps_py.gmm.toy` in DIR (a smoke test of this script only: its RTF says
nothing about the real graph). Writes a JSON line with the numbers to stdout and, with
--out, to a file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


class GraphWalker:
    """Random paths through HCLG_pdf.fst, so synthetic scores follow a sequence the graph allows."""

    def __init__(self, fst_path: Path, seed: int = 0) -> None:
        import kaldifst

        self.fst = kaldifst.StdVectorFst.read(str(fst_path))
        self.arcs: dict[int, list[tuple[int, int, int]]] = {}
        self.rng = np.random.default_rng(seed)
        self._kaldifst = kaldifst

    def _arcs(self, s: int) -> list[tuple[int, int, int]]:
        if s not in self.arcs:
            self.arcs[s] = [(a.ilabel, a.olabel, a.nextstate) for a in self._kaldifst.ArcIterator(self.fst, s)]
        return self.arcs[s]

    def pdf_path(self, frames: int) -> tuple[list[int], list[int]]:
        """(pdf id per frame, word ids on the path) for about `frames` frames: self-loops taken
        with probability 1/2; the walk ends in a final state (or restarts at a dead end)."""
        while True:
            pdfs: list[int] = []
            words: list[int] = []
            s = self.fst.start
            while True:
                arcs = self._arcs(s)
                final = self.fst.final(s) != float("inf")
                if len(pdfs) >= frames and final:
                    return pdfs, words
                if not arcs or len(pdfs) > 3 * frames:
                    break  # dead end or lost: walk again
                loops = [a for a in arcs if a[2] == s]
                moves = [a for a in arcs if a[2] != s] or loops
                pool = loops if loops and self.rng.random() < 0.5 else moves
                ilabel, olabel, s = pool[int(self.rng.integers(len(pool)))]
                if ilabel > 0:
                    pdfs.append(ilabel - 1)
                if olabel > 0:
                    words.append(olabel)


def synthetic_loglikes(rng: np.random.Generator, path: list[int], num_pdfs: int) -> np.ndarray:
    """NN-like scores: the path's pdf near log 1 (-0.5), the others around -12 (std 2)."""
    out = rng.normal(-12.0, 2.0, size=(len(path), num_pdfs)).astype(np.float32)
    out[np.arange(len(path)), path] = rng.normal(-0.5, 0.3, size=len(path))
    return out


def build_toy_graph(d: Path) -> Path:
    """The toy lang's HCLG in d/graph (files as steps_py.decode.graph writes them)."""
    import shutil

    import kaldi_hmm_gmm as khg

    from steps_py.decode.graph import make_hclg
    from steps_py.gmm.model_io import monophone_tree
    from steps_py.gmm.topo import Lang
    from steps_py.gmm.toy import make_toy_lang

    lang_dir = make_toy_lang(d / "lang")
    lang = Lang.load(lang_dir)
    topo = lang.topology()
    tree = monophone_tree(topo)
    tm = khg.TransitionModel(ctx_dep=tree, hmm_topo=topo)
    hclg, hclg_pdf = make_hclg(lang, tm, tree)
    g = d / "graph"
    g.mkdir(parents=True, exist_ok=True)
    hclg.write(str(g / "HCLG.fst"))
    hclg_pdf.write(str(g / "HCLG_pdf.fst"))
    shutil.copy(lang_dir / "words.txt", g / "words.txt")
    shutil.copy(lang_dir / "topo", g / "topo")
    (g / "num_pdfs").write_text(f"{tm.num_pdfs}\n")
    return g


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--graph", type=Path, default=Path("exp/mono/graph"))
    p.add_argument("--toy-graph", type=Path, default=None, help="build and use the toy graph in this dir (smoke test)")
    p.add_argument("--model", type=Path, default=None, help="acoustic model; synthetic scores without it")
    p.add_argument("--data", type=Path, default=None, help="data dir with fbank features (needs --model)")
    p.add_argument("--utts", type=int, default=50, help="utterances to decode (default 50)")
    p.add_argument("--synthetic-frames", type=int, default=300, help="frames per synthetic utterance")
    p.add_argument("--lm-weights", default="10", help="LM weights per decode (default 10; the sweep costs more)")
    p.add_argument("--beam", type=float, default=13.0)
    p.add_argument("--lattice-beam", type=float, default=8.0)
    p.add_argument("--max-active", type=int, default=7000)
    p.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    args = p.parse_args(argv)

    import torch

    from steps_py.decode import nnet
    from steps_py.log import setup_logging

    log = setup_logging("bench_decode")
    torch.set_num_threads(1)
    if args.toy_graph is not None:
        args.graph = build_toy_graph(args.toy_graph)
    try:
        num_pdfs = nnet.check_graph(args.graph)
        lm_weights = nnet.parse_lm_weights(args.lm_weights)
        cfg = nnet.DecodeConfig(model=args.model or Path("-"), graph=args.graph, data=args.data or Path("-"),
                                lm_weights=tuple(lm_weights), beam=args.beam,
                                lattice_beam=args.lattice_beam, max_active=args.max_active)
        t0 = time.perf_counter()
        decoder = nnet.make_decoder(cfg)
        decoder.decode_loglikes(np.zeros((5, num_pdfs), dtype=np.float32), lm_weights[:1])  # loads HCLG
        load_s = time.perf_counter() - t0
        real = args.model is not None and args.data is not None
        if real:
            model, mcfg, priors = nnet.load_model(args.model)
            nnet.check_model_vs_graph(args.model, mcfg, priors, args.graph, num_pdfs)
            reader = nnet.make_feature_reader(args.data)
            utts = reader.utts[:args.utts]
    except (nnet.DecodeError, ValueError) as e:  # ValueError: the decoder's GraphError
        log.error("%s", e)
        return 1
    rng = np.random.default_rng(0)
    walker = None if real else GraphWalker(args.graph / "HCLG_pdf.fst")
    import kaldialign

    nn_s = search_s = 0.0
    path_err = path_len = 0
    frames = 0
    n = len(utts) if real else args.utts
    for i in range(n):
        if real:
            feats = reader[utts[i]]
            t0 = time.perf_counter()
            loglikes = nnet.acoustic_scores(model, feats, priors)
            nn_s += time.perf_counter() - t0
        else:
            pdfs, path_words = walker.pdf_path(args.synthetic_frames)
            loglikes = synthetic_loglikes(rng, pdfs, num_pdfs)
        t0 = time.perf_counter()
        best = decoder.decode_loglikes(loglikes, lm_weights)
        search_s += time.perf_counter() - t0
        if not real:  # search errors: decoded words vs the words of the walked path
            d = kaldialign.edit_distance(path_words, best[lm_weights[0]])
            path_err += d["total"]
            path_len += len(path_words)
        frames += loglikes.shape[0]
    audio_s = frames * nnet.FRAME_SHIFT_S
    res = {"graph": str(args.graph), "scores": "model" if real else "synthetic", "utterances": n,
           "audio_s": round(audio_s, 2), "graph_load_s": round(load_s, 3), "lm_weights": lm_weights,
           "beam": args.beam, "max_active": args.max_active,
           "rtf_nn": round(nn_s / audio_s, 5) if real else None, "rtf_search": round(search_s / audio_s, 5),
           "rtf_total": round((nn_s + search_s) / audio_s, 5), "target_rtf": 0.05,
           "synthetic_path_wer": round(100.0 * path_err / path_len, 2) if path_len else None}
    res["meets_target"] = res["rtf_total"] <= 0.05
    line = json.dumps(res)
    print(line)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(line + "\n", encoding="utf-8")
    log.info("RTF per core: total %.4f (search %.4f%s) over %.1f s of audio; target <= 0.05",
             res["rtf_total"], res["rtf_search"], f", network {res['rtf_nn']:.4f}" if real else "", audio_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
