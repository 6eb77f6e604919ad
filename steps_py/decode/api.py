"""Decode several acoustic models on one data dir in one worker pool (the graph is loaded once
per worker process), one decode dir per model.

    from steps_py.decode.api import decode_models
    decode_models([Path("exp/dnn_ma_n4/final/global.safetensors"), ...], graph=Path("exp/mono/graph"),
                  data=Path("data/dev"), out_dirs=[Path("exp/dnn_ma_n4/decode_global_dev"), ...], nj=2)
    decode_models(models, graph, Path("data/test"), test_dirs, nj=2, lm_weight_from=dev_dirs)

A model is a network (``.safetensors``) or a GMM dir (``exp/mono``); both go through the same
search (``steps_py.decode.search``) and the same decode-dir writer
(``steps_py.decode.decode_dir``). On a dev set each model's lattices are scored at every LM
weight x word insertion penalty and the best pair is chosen; with ``lm_weight_from`` (one
dev decode dir per model) only the dev-chosen pair is scored, and a data dir that looks like
a test set refuses to be decoded without it (the pair is never chosen on test).

A done decode dir (``.done``) is skipped unless ``force`` or one of its inputs changed since
(the model file, the graph, the data dir's text and feats.scp, the dev decode dir it took
its LM weight from: their stamps are kept in ``.done``, see ``steps_py.fileio``). A decode where more than
``max_failed`` (5 %) of the utterances failed (no features, no path, an error) stops with a
``DecodeError`` naming them and writes nothing; below that they count as deletions and are
listed in ``summary.json``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steps_py.cli import progress
from steps_py.decode.decode_dir import ModelDecode, write_decode_dir
from steps_py.decode.inputs import (
    Chosen,
    DecodeError,
    check_graph,
    format_penalty,
    format_weight,
    is_test_set,
    read_chosen,
    read_words,
)
from steps_py.decode.pool import ChunkResult, PoolConfig, UttResult, make_tasks, run_pool
from steps_py.decode.search import SearchConfig, Timing
from steps_py.fileio import skip_done

log = logging.getLogger("decode")

DEFAULT_LM_WEIGHTS = tuple(float(w) for w in range(7, 18))  # Kaldi's local/score.sh: 7..17
DEFAULT_PENALTIES = (0.0, 0.5, 1.0)
FRAME_SHIFT_S = 0.01


@dataclass
class DecodeRequest:
    """Settings shared by all models of one `decode_models` call."""

    search: SearchConfig = field(default_factory=SearchConfig)
    lm_weights: tuple[float, ...] = DEFAULT_LM_WEIGHTS
    penalties: tuple[float, ...] = DEFAULT_PENALTIES
    priors: str = "model"
    nbest: int = 0
    max_utts: int = 0
    max_failed: float = 0.05
    force: bool = False


def read_ref(data: Path, encoding: str = "utf-8") -> dict[str, str]:
    from steps_py.score.cer import ScoreError, read_text

    if not (Path(data) / "text").is_file():
        raise DecodeError(
            f"{data}/text not found; --data must be a Kaldi data dir with a text file"
        )
    try:
        return read_text(Path(data) / "text", encoding=encoding)
    except ScoreError as e:
        raise DecodeError(str(e)) from None


def _feature_utts(data: Path, kind: str) -> set[str]:
    scp = Path(data) / kind / "feats.scp"
    if not scp.is_file():
        hint = "mfcc" if kind == "mfcc" else "fbank"
        raise DecodeError(
            f"{scp} not found; run stage 3 (python -m steps_py.features.compute "
            f"--data {data} --kind {hint})"
        )
    with open(scp, encoding="utf-8") as f:
        return {line.split(maxsplit=1)[0] for line in f if line.strip()}


def _check_model(path: Path, priors: str, graph_pdfs: int, graph: Path) -> str:
    """Load the model once in the parent (clear errors before any worker starts); its kind."""
    from steps_py.decode.scorers import load_scorer, model_kind

    kind = model_kind(path)
    sc = load_scorer(path, priors)
    if sc.num_pdfs != graph_pdfs:
        raise DecodeError(
            f"model {path} has {sc.num_pdfs} pdfs but graph {graph / 'num_pdfs'} says "
            f"{graph_pdfs}; decode with the graph built from the alignments the model "
            "was trained on (or retrain on the current alignments)"
        )
    return kind


def decode_models(
    models: list[Path],
    graph: Path,
    data: Path,
    out_dirs: list[Path],
    nj: int = 2,
    request: DecodeRequest | None = None,
    lm_weight_from: list[Path | None] | None = None,
) -> list[dict[str, Any] | None]:
    """Decode each model into its out dir; returns each summary (None for a skipped done dir)."""
    req = request or DecodeRequest()
    models, out_dirs = [Path(m) for m in models], [Path(o) for o in out_dirs]
    if len(models) != len(out_dirs) or not models:
        raise DecodeError(
            f"give one out dir per model ({len(models)} models, {len(out_dirs)} out dirs)"
        )
    froms = list(lm_weight_from) if lm_weight_from is not None else [None] * len(models)
    if len(froms) != len(models):
        raise DecodeError(
            f"give one --lm-weight-from dir per model ({len(models)} models, {len(froms)} dirs)"
        )
    if nj < 1:
        raise DecodeError(f"--nj must be >= 1, not {nj}")
    data = Path(data)

    def inputs_of(i: int) -> list[Path]:
        from steps_py.decode.scorers import model_kind

        try:
            kind = "mfcc" if model_kind(models[i]) == "gmm" else "fbank"
        except DecodeError:
            kind = "fbank"
        ins = [models[i], Path(graph), data / "text", data / kind / "feats.scp"]
        return ins + ([Path(froms[i])] if froms[i] is not None else [])  # type: ignore[list-item]

    todo = [
        i
        for i, o in enumerate(out_dirs)
        if not skip_done(o, req.force, "already decoded", inputs_of(i))
    ]
    results: list[dict[str, Any] | None] = [None] * len(models)
    if not todo:
        return results
    ginfo = check_graph(graph)
    words = read_words(Path(graph) / "words.txt")
    chosen: dict[int, Chosen] = {}
    for i in todo:
        if froms[i] is not None:
            chosen[i] = read_chosen(froms[i])  # type: ignore[arg-type]
        elif is_test_set(data):
            raise DecodeError(
                f"{data} looks like a test set: the LM weight and penalty are never chosen "
                "on test; pass --lm-weight-from <dev decode dir>"
            )
    kinds = {i: _check_model(models[i], req.priors, ginfo.num_pdfs, ginfo.dir) for i in todo}
    ref = read_ref(data)
    have: dict[str, set[str]] = {}
    for i in todo:
        k = "mfcc" if kinds[i] == "gmm" else "fbank"
        if k not in have:
            have[k] = _feature_utts(data, k)
    utts_all = sorted(ref)
    if req.max_utts > 0:
        utts_all = utts_all[: req.max_utts]
        ref = {u: ref[u] for u in utts_all}
    if not utts_all:
        raise DecodeError(f"{data}/text has no utterances")
    grids: list[tuple[tuple[float, float], ...]] = []
    for i in range(len(models)):
        if i in chosen:
            grids.append(((chosen[i].lm_weight, chosen[i].penalty),))
        else:
            grids.append(
                tuple((w, p) for p in sorted(req.penalties) for w in sorted(req.lm_weights))
            )
    from steps_py.score.normalize import normalize_text

    cfg = PoolConfig(
        graph=ginfo.dir,
        num_pdfs=ginfo.num_pdfs,
        data=data,
        search=req.search,
        models=tuple(models),
        grids=tuple(grids),
        refs={u: tuple(normalize_text(ref[u])) for u in utts_all},
        priors=req.priors,
        nbest=req.nbest,
        nbest_at=tuple(grids[i][0] if i in chosen else None for i in range(len(models))),
    )
    per_model_utts = {
        i: [u for u in utts_all if u in have["mfcc" if kinds[i] == "gmm" else "fbank"]]
        for i in todo
    }
    tasks = [t for t in make_tasks(len(models), utts_all, nj) if t[0] in todo]
    tasks = [(m, [u for u in us if u in set(per_model_utts[m])]) for m, us in tasks]
    tasks = [t for t in tasks if t[1]]
    got: dict[int, dict[str, UttResult]] = {i: {} for i in todo}
    timing: dict[int, Timing] = {i: Timing() for i in todo}
    n_total = sum(len(t[1]) for t in tasks)
    log.info(
        "decoding %d model(s) on %s (%d utterances each), %d job(s), graph %s (%d states)",
        len(todo),
        data,
        len(utts_all),
        nj,
        ginfo.dir,
        ginfo.states,
    )
    bar = progress(
        total=n_total, desc="decode", unit="utt", log_every=max(1, n_total // 10), logger=log
    )

    def on_result(r: ChunkResult) -> None:
        for u in r.utts:
            got[r.model][u.utt] = u
        timing[r.model].add(r.timing)
        bar.update(len(r.utts))

    t0 = time.perf_counter()
    try:
        run_pool(cfg, tasks, min(nj, max(1, len(tasks))), on_result)
    finally:
        bar.close()
    wall = time.perf_counter() - t0
    # all checks before anything is written
    for i in todo:
        failed = {u: r.error for u, r in got[i].items() if r.error}
        no_feats = [u for u in utts_all if u not in got[i]]
        bad = sorted(failed) + no_feats
        if len(bad) > req.max_failed * len(utts_all):
            shown = "; ".join(f"{u}: {failed.get(u, 'no features')}" for u in sorted(bad)[:10])
            raise DecodeError(
                f"{models[i]} on {data}: {len(bad)} of {len(utts_all)} utterances failed "
                f"(more than {100 * req.max_failed:g} %), nothing written to {out_dirs[i]}: "
                f"{shown}{' ...' if len(bad) > 10 else ''}"
            )
        unknown = {
            w
            for r in got[i].values()
            if r.error is None
            for b in r.best
            for w in b[0]
            if w not in words
        }
        if unknown:
            raise DecodeError(
                f"decoder produced word ids {sorted(unknown)[:10]} missing from "
                f"{Path(graph) / 'words.txt'}; rebuild the graph"
            )
    utt2spk = _utt2spk(data)
    for i in todo:
        md = ModelDecode(
            model=models[i], out=out_dirs[i], grid=grids[i], chosen_from=chosen.get(i), utts=got[i]
        )
        failed = {u: r.error for u, r in got[i].items() if r.error}
        no_feats = [u for u in utts_all if u not in got[i]]
        if failed or no_feats:
            log.warning(
                "%s: %d utterance(s) failed and %d had no features (scored as deletions): %s",
                out_dirs[i],
                len(failed),
                len(no_feats),
                "; ".join([f"{u}: {m}" for u, m in sorted(failed.items())[:5]] + no_feats[:5]),
            )
        t = timing[i]
        audio = t.frames * FRAME_SHIFT_S
        tm = {
            "cpu_s": round(t.total, 3),
            "forward_s": round(t.forward, 3),
            "search_s": round(t.search, 3),
            "lattice_s": round(t.lattice, 3),
            "determinize_s": round(t.determinize, 3),
            "score_s": round(t.score, 3),
            "pool_wall_s": round(wall, 3),
            "pool_models": len(todo),
            "rtf_per_core": round(t.total / audio, 5) if audio else None,
            "rtf_forward": round(t.forward / audio, 5) if audio else None,
            "rtf_search": round((t.search + t.lattice + t.determinize) / audio, 5)
            if audio
            else None,
        }
        info = {
            "model": str(models[i]),
            "model_kind": kinds[i],
            "graph": str(graph),
            "data": str(data),
            "nj": nj,
            "beam": req.search.beam,
            "lattice_beam": req.search.lattice_beam,
            "lattices": req.search.lattices,
            "max_active": None if req.search.lattices else req.search.max_active,
            "acoustic_scale": req.search.acoustic_scale,
            "priors": req.priors if kinds[i] == "nnet" else None,
            "no_features": no_feats,
        }
        s = write_decode_dir(md, ref, words, nj, utt2spk, info, tm, inputs_of(i))
        lat = (
            f"oracle {s['oracle_cer']:.2f}, {s['lattice_density']:.2f} arcs/frame"
            if s["oracle_cer"] is not None
            else "best path only"
        )
        log.info(
            "%s: %%CER %.2f (LM weight %s, penalty %s, %s), %s, RTF per core %.4f",
            out_dirs[i],
            s["cer"],
            format_weight(s["lm_weight"]),
            format_penalty(s["word_ins_penalty"]),
            "chosen here" if i not in chosen else f"from {chosen[i].source}",
            lat,
            tm["rtf_per_core"] or float("nan"),
        )
        results[i] = s
    return results


def _utt2spk(data: Path) -> dict[str, str] | None:
    p = Path(data) / "utt2spk"
    if not p.is_file():
        return None
    from steps_py.data.kaldi_dir import read_kaldi_map

    return read_kaldi_map(p)


def default_nj() -> int:
    return max(1, min(2, os.cpu_count() or 1))
