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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from steps_py.cli import progress
from steps_py.decode.artifact import DecodeDir
from steps_py.decode.decode_dir import ModelDecode, write_decode_dir
from steps_py.decode.inputs import (
    Chosen,
    DecodeError,
    check_graph,
    format_penalty,
    format_weight,
    is_test_set,
    read_words,
)
from steps_py.decode.pool import (
    ChunkResult,
    PoolConfig,
    UttResult,
    make_tasks,
    run_jobs,
    run_pool,
)
from steps_py.decode.search import SearchConfig, Timing
from steps_py.fileio import skip_done
from steps_py.runner import is_local

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
    cmd: str = (
        "local"  # where the jobs run: local (a worker pool) or Kaldi's --cmd (steps_py.runner)
    )


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
            f"{scp} not found; compute the features first (python -m "
            f"steps_py.features.compute --data {data} --kind {hint})"
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


@dataclass
class DecodePlan:
    """What one ``decode_models`` call decodes: the models not yet done, their grids and inputs."""

    models: list[Path]
    out_dirs: list[Path]
    froms: list[Path | None]
    data: Path
    graph: Path
    request: DecodeRequest
    todo: list[int]
    chosen: dict[int, Chosen]
    kinds: dict[int, str]
    grids: list[tuple[tuple[float, float], ...]]
    ref: dict[str, str]
    utts: list[str]
    words: dict[int, str]
    states: int

    def inputs_of(self, i: int) -> list[Path]:
        return _inputs_of(self.models[i], self.graph, self.data, self.froms[i])


@dataclass
class DecodeRun:
    """Per model, what the pool gave back."""

    got: dict[int, dict[str, UttResult]]
    timing: dict[int, Timing]
    wall: float


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
    plan = plan_decode(
        models, graph, data, out_dirs, nj, request or DecodeRequest(), lm_weight_from
    )
    results: list[dict[str, Any] | None] = [None] * len(plan.models)
    if not plan.todo:
        return results
    run = run_decode(plan, nj)
    check_decode(plan, run)
    for i in plan.todo:
        results[i] = write_decode(plan, run, i, nj)
    return results


def _inputs_of(model: Path, graph: Path, data: Path, dev: Path | None) -> list[Path]:
    from steps_py.decode.scorers import model_kind

    try:
        kind = "mfcc" if model_kind(model) == "gmm" else "fbank"
    except DecodeError:
        kind = "fbank"
    ins = [model, Path(graph), data / "text", data / kind / "feats.scp"]
    return ins + ([Path(dev)] if dev is not None else [])


def plan_decode(
    models: list[Path],
    graph: Path,
    data: Path,
    out_dirs: list[Path],
    nj: int,
    req: DecodeRequest,
    lm_weight_from: list[Path | None] | None,
) -> DecodePlan:
    """Check the arguments and inputs, skip done decode dirs, and set each model's grid."""
    models, out_dirs, data = [Path(m) for m in models], [Path(o) for o in out_dirs], Path(data)
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
    todo = [
        i
        for i, o in enumerate(out_dirs)
        if not skip_done(
            o, req.force, "already decoded", _inputs_of(models[i], graph, data, froms[i])
        )
    ]
    plan = DecodePlan(
        models, out_dirs, froms, data, Path(graph), req, todo, {}, {}, [], {}, [], {}, 0
    )
    if todo:
        _fill_plan(plan)
    return plan


def _fill_plan(plan: DecodePlan) -> None:
    req, data = plan.request, plan.data
    ginfo = check_graph(plan.graph)
    plan.graph, plan.states = ginfo.dir, ginfo.states
    plan.words = read_words(ginfo.dir / "words.txt")
    for i in plan.todo:
        dev = plan.froms[i]
        if dev is not None:
            plan.chosen[i] = DecodeDir(dev).chosen()
        elif is_test_set(data):
            raise DecodeError(
                f"{data} looks like a test set: the LM weight and penalty are never chosen "
                "on test; pass --lm-weight-from <dev decode dir>"
            )
    plan.kinds = {
        i: _check_model(plan.models[i], req.priors, ginfo.num_pdfs, ginfo.dir) for i in plan.todo
    }
    ref = read_ref(data)
    utts = sorted(ref)
    if req.max_utts > 0:
        utts = utts[: req.max_utts]
        ref = {u: ref[u] for u in utts}
    if not utts:
        raise DecodeError(f"{data}/text has no utterances")
    plan.ref, plan.utts = ref, utts
    full = tuple((w, p) for p in sorted(req.penalties) for w in sorted(req.lm_weights))
    plan.grids = [
        ((plan.chosen[i].lm_weight, plan.chosen[i].penalty),) if i in plan.chosen else full
        for i in range(len(plan.models))
    ]
    if req.search.lattices:
        from steps_py.decode.lattice_faster import resolve_decoder

        search = replace(req.search, decoder=resolve_decoder(req.search.decoder))
        plan.request = replace(req, search=search)


def run_decode(plan: DecodePlan, nj: int) -> DecodeRun:
    """Decode every model of the plan in one worker pool."""
    from steps_py.score.normalize import normalize_text

    req, data = plan.request, plan.data
    have: dict[str, set[str]] = {}
    for i in plan.todo:
        k = "mfcc" if plan.kinds[i] == "gmm" else "fbank"
        if k not in have:
            have[k] = _feature_utts(data, k)
    cfg = PoolConfig(
        graph=plan.graph,
        num_pdfs=int((plan.graph / "num_pdfs").read_text()),
        data=data,
        search=req.search,
        models=tuple(plan.models),
        grids=tuple(plan.grids),
        refs={u: tuple(normalize_text(plan.ref[u])) for u in plan.utts},
        priors=req.priors,
        nbest=req.nbest,
        nbest_at=tuple(
            plan.grids[i][0] if i in plan.chosen else None for i in range(len(plan.models))
        ),
    )
    feats_of = {i: have["mfcc" if plan.kinds[i] == "gmm" else "fbank"] for i in plan.todo}
    tasks = [
        (m, [u for u in us if u in feats_of[m]])
        for m, us in make_tasks(len(plan.models), plan.utts, nj)
        if m in feats_of
    ]
    tasks = [t for t in tasks if t[1]]
    run = DecodeRun({i: {} for i in plan.todo}, {i: Timing() for i in plan.todo}, 0.0)
    n_total = sum(len(t[1]) for t in tasks)
    log.info(
        "decoding %d model(s) on %s (%d utterances each), %d job(s), graph %s (%d states), %s",
        len(plan.todo),
        data,
        len(plan.utts),
        nj,
        plan.graph,
        plan.states,
        _search_line(req.search),
    )
    bar = progress(
        total=n_total, desc="decode", unit="utt", log_every=max(1, n_total // 10), logger=log
    )

    def on_result(r: ChunkResult) -> None:
        for u in r.utts:
            run.got[r.model][u.utt] = u
        run.timing[r.model].add(r.timing)
        bar.update(len(r.utts))

    t0 = time.perf_counter()
    n_jobs = min(nj, max(1, len(tasks)))
    try:
        if is_local(req.cmd):
            run_pool(cfg, tasks, n_jobs, on_result, plan.out_dirs[0] / "log")
        else:
            run_jobs(cfg, tasks, n_jobs, req.cmd, plan.out_dirs[0] / "log", on_result)
    finally:
        bar.close()
    run.wall = time.perf_counter() - t0
    return run


def _search_line(s: SearchConfig) -> str:
    if not s.lattices:
        return f"best path only (FasterDecoder, beam {s.beam:g}, max-active {s.max_active})"
    name = "LatticeFasterDecoder" if s.decoder == "faster" else "LatticeSimpleDecoder"
    active = f", max-active {s.max_active}" if s.decoder == "faster" else ""
    return f"lattices ({name}, beam {s.beam:g}, lattice beam {s.lattice_beam:g}{active})"


def check_decode(plan: DecodePlan, run: DecodeRun) -> None:
    """All checks before anything is written: failure share and unknown word ids."""
    n = len(plan.utts)
    for i in plan.todo:
        got = run.got[i]
        failed = {u: r.error for u, r in got.items() if r.error}
        bad = sorted(failed) + [u for u in plan.utts if u not in got]
        if len(bad) > plan.request.max_failed * n:
            shown = "; ".join(f"{u}: {failed.get(u, 'no features')}" for u in sorted(bad)[:10])
            raise DecodeError(
                f"{plan.models[i]} on {plan.data}: {len(bad)} of {n} utterances failed "
                f"(more than {100 * plan.request.max_failed:g} %), nothing written to "
                f"{plan.out_dirs[i]}: {shown}{' ...' if len(bad) > 10 else ''}"
            )
        unknown = {
            w
            for r in got.values()
            if r.error is None
            for b in r.best
            for w in b[0]
            if w not in plan.words
        }
        if unknown:
            raise DecodeError(
                f"decoder produced word ids {sorted(unknown)[:10]} missing from "
                f"{plan.graph / 'words.txt'}; rebuild the graph"
            )


def _timing_summary(t: Timing, wall: float, models: int) -> dict[str, Any]:
    audio = t.frames * FRAME_SHIFT_S

    def rtf(x: float) -> float | None:
        return round(x / audio, 5) if audio else None

    return {
        "cpu_s": round(t.total, 3),
        "forward_s": round(t.forward, 3),
        "search_s": round(t.search, 3),
        "lattice_s": round(t.lattice, 3),
        "determinize_s": round(t.determinize, 3),
        "score_s": round(t.score, 3),
        "pool_wall_s": round(wall, 3),
        "pool_models": models,
        "rtf_per_core": rtf(t.total),
        "rtf_forward": rtf(t.forward),
        "rtf_search": rtf(t.search + t.lattice + t.determinize),
        "rtf_determinize": rtf(t.determinize),
    }


def write_decode(plan: DecodePlan, run: DecodeRun, i: int, nj: int) -> dict[str, Any]:
    """Write model ``i``'s decode dir; returns its summary."""
    req, got = plan.request, run.got[i]
    md = ModelDecode(
        model=plan.models[i],
        out=plan.out_dirs[i],
        grid=plan.grids[i],
        chosen_from=plan.chosen.get(i),
        utts=got,
    )
    failed = {u: r.error for u, r in got.items() if r.error}
    no_feats = [u for u in plan.utts if u not in got]
    partial = sorted(u for u, r in got.items() if r.error is None and r.partial)
    if failed or no_feats:
        log.warning(
            "%s: %d utterance(s) failed and %d had no features (scored as deletions): %s",
            md.out,
            len(failed),
            len(no_feats),
            "; ".join([f"{u}: {m}" for u, m in sorted(failed.items())[:5]] + no_feats[:5]),
        )
    if partial:
        log.warning(
            "%s: %d utterance(s) reached no final state of the graph within the beam; their "
            "partial lattices are kept and scored (widen --beam to avoid it): %s",
            md.out,
            len(partial),
            " ".join(partial[:5]) + (" ..." if len(partial) > 5 else ""),
        )
    s = req.search
    info = {
        "model": str(plan.models[i]),
        "model_kind": plan.kinds[i],
        "graph": str(plan.graph),
        "data": str(plan.data),
        "nj": nj,
        "beam": s.beam,
        "lattice_beam": s.lattice_beam,
        "lattices": s.lattices,
        "decoder": (s.decoder if s.lattices else "faster-best-path"),
        "max_active": None if s.lattices and s.decoder == "simple" else s.max_active,
        "acoustic_scale": s.acoustic_scale,
        "priors": req.priors if plan.kinds[i] == "nnet" else None,
        "no_features": no_feats,
        "partial": partial,
    }
    tm = _timing_summary(run.timing[i], run.wall, len(plan.todo))
    summary = write_decode_dir(
        md, plan.ref, plan.words, nj, _utt2spk(plan.data), info, tm, plan.inputs_of(i)
    )
    _log_result(md, summary, plan.chosen.get(i), tm)
    return summary


def _log_result(
    md: ModelDecode, s: dict[str, Any], chosen: Chosen | None, tm: dict[str, Any]
) -> None:
    lat = (
        f"oracle {s['oracle_cer']:.2f}, {s['lattice_density']:.2f} arcs/frame"
        if s["oracle_cer"] is not None
        else "best path only"
    )
    log.info(
        "%s: %%CER %.2f (LM weight %s, penalty %s, %s), %s, RTF per core %.4f",
        md.out,
        s["cer"],
        format_weight(s["lm_weight"]),
        format_penalty(s["word_ins_penalty"]),
        "chosen here" if chosen is None else f"from {chosen.source}",
        lat,
        tm["rtf_per_core"] or float("nan"),
    )


def _utt2spk(data: Path) -> dict[str, str] | None:
    p = Path(data) / "utt2spk"
    if not p.is_file():
        return None
    from steps_py.data.kaldi_dir import read_kaldi_map

    return read_kaldi_map(p)


def default_nj() -> int:
    return max(1, min(2, os.cpu_count() or 1))
