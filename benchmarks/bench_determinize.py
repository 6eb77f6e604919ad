"""Lattice determinization, compiled loops (numba, ``steps_py.decode.lattice_jit``) against
the Python ones, side by side on the same raw lattices of a real decode.

    python benchmarks/bench_determinize.py --graph exp/mono/graph --data data/dev \\
        --model exp/dnn_ma_n1/final/global.safetensors [--utts 60] [--max-active 700]

Decodes ``--utts`` utterances with Kaldi's LatticeFasterDecoder as the recipe does (beam,
lattice beam, max-active), keeps the raw lattices, then determinizes all of them with each
implementation (CPU time, one process) and checks that the word lattices are identical. It
prints each one's determinization time, its share of the whole decode (forward + search +
raw lattice + determinization) and the ratio, as a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--graph", type=Path, default=Path("exp/mono/graph"))
    p.add_argument("--model", type=Path, required=True, help="network .safetensors or GMM dir")
    p.add_argument("--data", type=Path, required=True, help="data dir with text and features")
    p.add_argument("--utts", type=int, default=60, help="utterances (default %(default)s)")
    p.add_argument("--beam", type=float, default=10.0, help="default %(default)s")
    p.add_argument("--lattice-beam", type=float, default=4.0, help="default %(default)s")
    p.add_argument("--max-active", type=int, default=700, help="default %(default)s")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    args = p.parse_args(argv)

    import torch

    from steps_py.decode.api import read_ref
    from steps_py.decode.inputs import check_graph
    from steps_py.decode.lattice import determinize, warm_up
    from steps_py.decode.scorers import load_scorer, model_kind
    from steps_py.decode.search import Search, SearchConfig, Timing

    torch.set_num_threads(1)
    acwt = 0.1 if model_kind(args.model) == "nnet" else 0.083333
    info = check_graph(args.graph)
    scorer = load_scorer(args.model)
    reader = scorer.open_features(args.data)
    utts = [u for u in sorted(read_ref(args.data)) if u in reader][: args.utts]
    cfg = SearchConfig(
        beam=args.beam,
        lattice_beam=args.lattice_beam,
        acoustic_scale=acwt,
        max_active=args.max_active,
    )
    search = Search(args.graph, cfg, info.num_pdfs)
    warm_up()
    total = Timing()
    raws = []
    for utt in utts:
        t0 = time.process_time()
        ll = scorer.loglikes(reader, utt)
        forward = time.process_time() - t0
        raw, t = search.raw_lattice(ll)
        t.forward = forward
        total.add(t)
        raws.append(raw)
    rest = total.forward + total.search + total.lattice
    seconds = total.frames * 0.01
    out: dict[str, object] = {"utts": len(utts), "audio_s": round(seconds, 1)}
    lats = {}
    print(
        f"{len(utts)} utterances, {seconds:.0f} s of audio; forward+search+raw lattice "
        f"{rest:.2f} s CPU (RTF {rest / seconds:.4f})"
    )
    print(f"{'determinization':16} {'CPU s':>8} {'RTF':>8} {'share of decode':>16}")
    for name, jit in (("python", False), ("compiled", True)):
        t0 = time.process_time()
        lats[name] = [determinize(r, cfg.lattice_beam, acwt, jit=jit) for r in raws]
        det = time.process_time() - t0
        share = det / (rest + det)
        out[name] = {
            "cpu_s": round(det, 3),
            "rtf": round(det / seconds, 5),
            "share": round(share, 3),
        }
        print(f"{name:16} {det:8.2f} {det / seconds:8.4f} {100 * share:15.1f}%")
    same = all(
        (a.start, a.arcs, a.finals) == (b.start, b.arcs, b.finals)
        for a, b in zip(lats["python"], lats["compiled"], strict=True)
    )
    ratio = out["python"]["cpu_s"] / max(out["compiled"]["cpu_s"], 1e-9)  # type: ignore[index]
    out["ratio_python_over_compiled"] = round(ratio, 2)
    out["identical_lattices"] = same
    print(f"python / compiled: {ratio:.2f}x; identical lattices: {same}")
    print(json.dumps(out))
    if args.out:
        args.out.write_text(json.dumps(out) + "\n", encoding="utf-8")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
