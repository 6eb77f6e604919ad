"""Where decoding time goes: Kaldi's LatticeSimpleDecoder, LatticeFasterDecoder and best-path
FasterDecoder side by side, network forward vs search vs lattice vs determinization.

    python benchmarks/bench_decode.py --graph exp/mono/graph --data data/dev \\
        --model exp/dnn_ma_n4/final/global.safetensors [--utts 40] \\
        [--lattice-beams 8,10] [--decoders simple,faster] [--max-active 7000] [--best-beam 13]
    python benchmarks/bench_decode.py --model exp/mono --data data/dev ...   # the GMM

One process, one torch thread, CPU time (``time.process_time``), so every number is per core
and the configurations are measured side by side on the same utterances (on a shared
machine only the ratios are stable). For each utterance it times once:

* ``load``: reading HCLG.fst and building the decoders (once per worker process);
* ``forward``: the acoustic model (network forward, or the GMM's log-likelihoods);

and for each search configuration:

* ``best-path``: kaldi-decoder's FasterDecoder (beam, max-active), Viterbi best path only;
* ``simple b<B>``: kaldi-decoder's LatticeSimpleDecoder at beam B (it has no max-active);
* ``faster b<B>``: Kaldi's LatticeFasterDecoder at beam B with max-active
  (``steps_py.decode.lattice_faster``), as the recipe decodes;

each lattice row split into ``search`` (token passing), ``lattice`` (raw lattice out of the
decoder), ``determinize`` (word-level determinization, ``steps_py.decode.lattice``) and
``score`` (best path at every LM weight x penalty, oracle).

Each row gives the real-time factor (seconds per second of audio) of each part and in
total (forward included), the CER at the decoding scale (LM weight 1/acoustic-scale,
penalty 0) and, for lattices, the best CER over the LM weight x penalty grid and the
oracle CER, the raw and word lattice arcs per frame, and the time ratio to best-path. It
prints a table and one JSON line (``--out`` writes the JSON to a file too). The target is
a total RTF <= 0.05 per core.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--graph", type=Path, default=Path("exp/mono/graph"))
    p.add_argument(
        "--model", type=Path, required=True, help="network .safetensors or GMM dir (exp/mono)"
    )
    p.add_argument("--data", type=Path, required=True, help="data dir with text and features")
    p.add_argument(
        "--utts", type=int, default=40, help="utterances (the first N sorted; default %(default)s)"
    )
    p.add_argument(
        "--acoustic-scale",
        type=float,
        default=None,
        help="default 0.1 for networks, 0.083333 for GMMs",
    )
    p.add_argument(
        "--best-beam", type=float, default=13.0, help="best-path beam (default %(default)s)"
    )
    p.add_argument(
        "--max-active",
        type=int,
        default=7000,
        help="max-active of best-path and LatticeFasterDecoder (default %(default)s)",
    )
    p.add_argument(
        "--decoders",
        default="simple,faster",
        help="lattice decoders to time at each beam (default %(default)s)",
    )
    p.add_argument(
        "--lattice-beams", default="8,10", help="lattice search beams (default %(default)s)"
    )
    p.add_argument(
        "--lattice-beam", type=float, default=5.0, help="lattice beam (default %(default)s)"
    )
    p.add_argument(
        "--pdf-beam",
        type=float,
        default=0.0,
        help="lattice search: pdfs more than this many nats below a frame's best are pushed "
        "out of the beam (0 = off; default %(default)s)",
    )
    p.add_argument("--lm-weights", default="7:17")
    p.add_argument("--word-ins-penalties", default="0.0,0.5,1.0")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    args = p.parse_args(argv)

    import torch

    from steps_py.decode.api import read_ref
    from steps_py.decode.inputs import (
        DecodeError,
        check_graph,
        parse_lm_weights,
        parse_penalties,
        read_words,
    )
    from steps_py.decode.scorers import load_scorer, model_kind
    from steps_py.decode.search import Search, SearchConfig
    from steps_py.log import setup_logging
    from steps_py.score.cer import score_texts
    from steps_py.score.normalize import normalize_text, normalize_token

    log = setup_logging("bench_decode")
    torch.set_num_threads(1)
    try:
        info = check_graph(args.graph)
        words = read_words(args.graph / "words.txt")
        scorer = load_scorer(args.model)
        ref_all = read_ref(args.data)
        acwt = args.acoustic_scale or (0.1 if model_kind(args.model) == "nnet" else 0.083333)
        grid = [
            (w, q)
            for q in parse_penalties(args.word_ins_penalties)
            for w in parse_lm_weights(args.lm_weights)
        ]
        beams = [float(b) for b in args.lattice_beams.split(",") if b.strip()]
    except (DecodeError, ValueError) as e:
        log.error("%s", e)
        return 1
    reader = scorer.open_features(args.data)
    utts = [u for u in sorted(ref_all) if u in reader][: args.utts]
    ref = {u: ref_all[u] for u in utts}
    units = {i: tuple(normalize_token(w)) for i, w in words.items()}
    t0 = time.process_time()
    searches = {
        "best-path": Search(
            args.graph,
            SearchConfig(beam=args.best_beam, acoustic_scale=acwt, max_active=args.max_active),
            info.num_pdfs,
        )
    }
    load_s = time.process_time() - t0
    for b in beams:
        for dec in [d.strip() for d in args.decoders.split(",") if d.strip()]:
            searches[f"{dec} b{b:g}"] = Search(
                args.graph,
                SearchConfig(
                    beam=b,
                    lattice_beam=args.lattice_beam,
                    acoustic_scale=acwt,
                    pdf_beam=args.pdf_beam,
                    max_active=args.max_active,
                    decoder=dec,
                ),
                info.num_pdfs,
            )
    decode_lmwt = 1.0 / acwt
    k_decode = min(range(len(grid)), key=lambda k: (abs(grid[k][0] - decode_lmwt), grid[k][1]))
    rows: dict[str, dict] = {
        name: {
            "search": 0.0,
            "lattice": 0.0,
            "determinize": 0.0,
            "score": 0.0,
            "raw_arcs": 0.0,
            "arcs": 0,
            "oracle": 0,
            "hyp": {},
            "grid": [{} for _ in grid],
        }
        for name in searches
    }
    forward = 0.0
    frames = 0
    for utt in utts:
        t0 = time.process_time()
        ll = scorer.loglikes(reader, utt)
        forward += time.process_time() - t0
        frames += ll.shape[0]
        for name, s in searches.items():
            r = rows[name]
            if name == "best-path":
                ids, t = s.best_path(ll)
                r["hyp"][utt] = " ".join(words[i] for i in ids)
                r["search"] += t.search
                continue
            lat, t = s.lattice(ll)
            t1 = time.process_time()
            best = lat.best_paths(grid)
            r["oracle"] += lat.oracle_errors(normalize_text(ref[utt]), lambda w: units.get(w, ()))
            t.score = time.process_time() - t1
            for k, (ids, _, _) in enumerate(best):
                r["grid"][k][utt] = " ".join(words[i] for i in ids)
            r["hyp"][utt] = r["grid"][k_decode][utt]
            for part in ("search", "lattice", "determinize", "score"):
                r[part] += getattr(t, part)
            r["raw_arcs"] += t.extra["raw_arcs"]
            r["arcs"] += lat.num_arcs
    audio = frames * 0.01
    ref_len = score_texts(ref, ref, empty_ref="skip").ref_len
    out = {
        "graph": str(args.graph),
        "model": str(args.model),
        "data": str(args.data),
        "utterances": len(utts),
        "audio_s": round(audio, 2),
        "acoustic_scale": acwt,
        "load_s": round(load_s, 3),
        "rtf_forward": round(forward / audio, 5),
        "decode_lm_weight": grid[k_decode][0],
        "rows": [],
    }
    base = rows["best-path"]["search"]
    for name, r in rows.items():
        total = forward + r["search"] + r["lattice"] + r["determinize"] + r["score"]
        cer = score_texts(ref, r["hyp"], empty_ref="skip").cer
        row = {
            "config": name,
            "rtf_search": round(r["search"] / audio, 5),
            "rtf_lattice": round(r["lattice"] / audio, 5),
            "rtf_determinize": round(r["determinize"] / audio, 5),
            "rtf_score": round(r["score"] / audio, 5),
            "rtf_total": round(total / audio, 5),
            "time_vs_best_path": round((total - forward) / base, 2) if base else None,
            "determinize_share_of_decoding": round(r["determinize"] / total, 3) if total else None,
            "cer_at_decode_scale": round(cer, 2),
        }
        if name != "best-path":
            cers = [score_texts(ref, g, empty_ref="skip") for g in r["grid"]]
            kb = min(range(len(grid)), key=lambda k: (cers[k].errors, grid[k][1], grid[k][0]))
            row.update(
                best_grid_cer=round(cers[kb].cer, 2),
                best_grid=list(grid[kb]),
                oracle_cer=round(100.0 * r["oracle"] / ref_len, 2),
                raw_arcs_per_frame=round(r["raw_arcs"] / frames, 2),
                lattice_density=round(r["arcs"] / frames, 3),
            )
        out["rows"].append(row)
    print(
        f"{len(utts)} utterances, {audio:.1f} s of audio; graph load {load_s:.2f} s; network/GMM forward RTF "
        f"{out['rtf_forward']:.4f}; CPU seconds per audio second, one core"
    )
    print(
        f"{'config':<14} {'search':>8} {'lattice':>8} {'det':>8} {'score':>8} {'total':>8} {'x best':>7} "
        f"{'CER@dec':>8} {'CER best':>9} {'oracle':>7} {'raw a/f':>8} {'lat a/f':>8} {'det %':>6}"
    )
    for row in out["rows"]:
        print(
            f"{row['config']:<14} {row['rtf_search']:>8.4f} {row['rtf_lattice']:>8.4f} {row['rtf_determinize']:>8.4f} "
            f"{row['rtf_score']:>8.4f} {row['rtf_total']:>8.4f} {row['time_vs_best_path'] or 0:>7.2f} "
            f"{row['cer_at_decode_scale']:>8.2f} {row.get('best_grid_cer', float('nan')):>9.2f} "
            f"{row.get('oracle_cer', float('nan')):>7.2f} {row.get('raw_arcs_per_frame', float('nan')):>8.1f} "
            f"{row.get('lattice_density', float('nan')):>8.3f} "
            f"{100 * (row['determinize_share_of_decoding'] or 0):>6.1f}"
        )
    line = json.dumps(out)
    print(line)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(line + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
