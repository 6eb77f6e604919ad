"""Write a decode dir the way Kaldi's decoding and scoring scripts leave one.

``<exp>/decode_<tag>_<set>/``:

* ``lat.<job>.gz`` (``job`` = 1..``num_jobs``): word lattices, Kaldi binary CompactLattice
  archives (``steps_py.decode.lattice_io``); ``num_jobs`` (a best-path decode,
  ``--no-lattices``, writes no lattices and has no oracle);
* ``cer_<lmwt>_<wip>``: for every LM weight and word insertion penalty scored, the lines
  Kaldi's ``compute-wer`` prints (``%WER`` line, ``%SER`` line, ``Scored ...``), as Kaldi's
  aishell recipe writes its ``cer_*`` files, so ``grep WER exp/*/decode*/cer_* |
  utils/best_wer.sh`` works; units are characters (``steps_py.score.normalize``);
* ``scoring_kaldi/``: ``test_filt.txt`` (reference), ``penalty_<wip>/<lmwt>.txt``
  (hypotheses), ``best_cer`` (the best ``cer_*`` line and its file, best_wer.sh-style),
  ``cer_details/{lmwt,wip,per_utt,per_spk}`` for the chosen pair;
* ``ref.txt``, ``hyp.txt`` (the chosen pair's hypotheses), ``cer`` (its ``%CER`` line),
  ``best_lmwt``, ``best_wip``, ``nbest.txt`` when N-best lists were asked for;
* ``summary.json``: ``cer``, ``errors``, ``ref_len``, ``ins``/``del``/``sub``, the chosen
  ``lm_weight`` and ``word_ins_penalty`` and where they were chosen (``chosen_on``),
  ``oracle_cer``/``oracle_errors``, ``lattice_density`` (word-lattice arcs per frame), failed
  utterances, the search settings; every time measurement lives under ``timing`` (the rest
  of the dir is byte-for-byte the same when the same decode runs again);
* ``.done`` last (with the stamps of the inputs and the time it was written).

The pair is chosen on the set itself only for a dev set: the lowest error count, ties going
to the smaller penalty, then the smaller LM weight (the order Kaldi's best_wer.sh sees the
files in). A test set is scored at the pair read from its dev decode dir.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steps_py.decode.artifact import DecodeDir
from steps_py.decode.inputs import Chosen, format_penalty, format_weight
from steps_py.decode.lattice_io import write_lattice_archive
from steps_py.decode.pool import UttResult
from steps_py.fileio import atomic_write_json, atomic_write_text, mark_done
from steps_py.score.cer import (
    CerResult,
    format_per_speaker,
    format_per_utt,
    per_speaker,
    score_texts,
)
from steps_py.score.normalize import normalize_text


@dataclass
class ModelDecode:
    """What the pool produced for one model on one data dir."""

    model: Path
    out: Path
    grid: tuple[tuple[float, float], ...]
    chosen_from: Chosen | None
    utts: dict[str, UttResult]


def kaldi_lines(res: CerResult) -> str:
    """compute-wer's three lines (its %WER line is what best_wer.sh matches)."""
    sent_err = sum(1 for u in res.utts.values() if u.errors)
    n = len(res.utts)
    ser = 100.0 * sent_err / n if n else 0.0
    partial = " [PARTIAL]" if res.missing else ""
    return (
        f"{res.line('WER')}{partial}\n%SER {ser:.2f} [ {sent_err} / {n} ]\n"
        f"Scored {n} sentences, {len(res.missing)} not present in hyp.\n"
    )


def _text(lines: dict[str, str]) -> str:
    return "".join(f"{u} {t}".rstrip() + "\n" for u, t in sorted(lines.items()))


def split_jobs(utts: list[str], nj: int) -> list[list[str]]:
    """Sorted utterances in `nj` contiguous parts (as Kaldi's split_data.sh, by utterance)."""
    utts = sorted(utts)
    nj = max(1, min(nj, len(utts)))
    q, r = divmod(len(utts), nj)
    out, i = [], 0
    for j in range(nj):
        k = q + (1 if j < r else 0)
        out.append(utts[i : i + k])
        i += k
    return out


def clear_outputs(out: Path) -> None:
    """Remove what an earlier decode into `out` left (other LM weights, other job counts)."""
    import shutil

    (out / ".done").unlink(missing_ok=True)
    for pat in (DecodeDir.CER_FILES, DecodeDir.LATTICES, "hyp_lmwt*.txt", "cer_lmwt.txt"):
        for p in out.glob(pat):
            p.unlink()
    for d in ("scoring_kaldi", "scoring"):
        shutil.rmtree(out / d, ignore_errors=True)


def write_decode_dir(
    md: ModelDecode,
    ref: dict[str, str],
    words: dict[int, str],
    nj: int,
    utt2spk: dict[str, str] | None,
    info: dict[str, Any],
    timing: dict[str, Any],
    inputs: list[Path] | None = None,
) -> dict[str, Any]:
    """Score every grid point, choose (or take) the pair, write every file; returns summary."""
    out = md.out
    out.mkdir(parents=True, exist_ok=True)
    clear_outputs(out)
    ok = {u: r for u, r in md.utts.items() if r.error is None}
    with_lattices = all(r.oracle_errors >= 0 for r in ok.values())
    hyps = [
        {u: " ".join(words[w] for w in r.best[k][0]) for u, r in ok.items()}
        for k in range(len(md.grid))
    ]
    results = [
        score_texts(
            ref,
            h,
            ref_name=str(out / "ref.txt"),
            hyp_name=f"{out}/{DecodeDir.cer_name(*md.grid[k])}",
            empty_ref="skip",
        )
        for k, h in enumerate(hyps)
    ]
    if md.chosen_from is not None:
        best = 0  # the grid is the single dev-chosen pair
    else:
        best = min(
            range(len(md.grid)), key=lambda k: (results[k].errors, md.grid[k][1], md.grid[k][0])
        )
    _write_scoring(md, ref, hyps, results, best, utt2spk)
    num_jobs = _write_lattices_and_nbest(md, ok, words, nj, with_lattices)
    summary = {
        **_summary(md, ref, ok, results[best], md.grid[best], with_lattices),
        "num_jobs": num_jobs,
        **info,
        "timing": timing,
    }
    atomic_write_json(out / DecodeDir.SUMMARY, summary)
    lmwt, wip = md.grid[best]
    mark_done(
        out, {"cer": summary["cer"], "lm_weight": lmwt, "word_ins_penalty": wip}, inputs=inputs
    )
    return summary


def _write_scoring(
    md: ModelDecode,
    ref: dict[str, str],
    hyps: list[dict[str, str]],
    results: list[CerResult],
    best: int,
    utt2spk: dict[str, str] | None,
) -> None:
    """ref.txt, hyp.txt, cer, best_lmwt/best_wip, every cer_<lmwt>_<wip> and scoring_kaldi/."""
    out, (lmwt, wip), res = md.out, md.grid[best], results[best]
    atomic_write_text(out / "ref.txt", _text(ref))
    sk = out / "scoring_kaldi"
    atomic_write_text(sk / "test_filt.txt", _text(ref))
    for k, (lw, p) in enumerate(md.grid):
        atomic_write_text(
            sk / f"penalty_{format_penalty(p)}" / f"{format_weight(lw)}.txt", _text(hyps[k])
        )
        atomic_write_text(out / DecodeDir.cer_name(lw, p), kaldi_lines(results[k]))
    atomic_write_text(sk / "best_cer", f"{res.line('WER')} {out / DecodeDir.cer_name(lmwt, wip)}\n")
    det = sk / "cer_details"
    atomic_write_text(det / "lmwt", f"{format_weight(lmwt)}\n")
    atomic_write_text(det / "wip", f"{format_penalty(wip)}\n")
    atomic_write_text(det / "per_utt", format_per_utt(res))
    atomic_write_text(det / "per_spk", format_per_speaker(per_speaker(res, utt2spk)))
    atomic_write_text(out / "hyp.txt", _text(hyps[best]))
    atomic_write_text(out / "cer", res.line() + "\n")
    atomic_write_text(out / DecodeDir.BEST_LMWT, f"{format_weight(lmwt)}\n")
    atomic_write_text(out / DecodeDir.BEST_WIP, f"{format_penalty(wip)}\n")


def _write_lattices_and_nbest(
    md: ModelDecode, ok: dict[str, UttResult], words: dict[int, str], nj: int, with_lattices: bool
) -> int:
    """lat.<job>.gz (when the decode kept lattices), num_jobs and nbest.txt; the job count."""
    out = md.out
    jobs = split_jobs(sorted(md.utts), nj)
    for j, part in enumerate(jobs if with_lattices else [], 1):
        write_lattice_archive(
            out / f"lat.{j}.gz",
            [(u, md.utts[u].lattice) for u in part if md.utts[u].lattice is not None],
        )
    atomic_write_text(out / "num_jobs", f"{len(jobs)}\n")
    if any(r.nbest for r in ok.values()):
        lines = []
        for u in sorted(ok):
            for i, (ws, g, a) in enumerate(ok[u].nbest, 1):
                lines.append(f"{u}-{i} {g:.3f} {a:.3f} {' '.join(words[w] for w in ws)}".rstrip())
        atomic_write_text(out / "nbest.txt", "\n".join(lines) + "\n")
    return len(jobs)


def _summary(
    md: ModelDecode,
    ref: dict[str, str],
    ok: dict[str, UttResult],
    res: CerResult,
    chosen: tuple[float, float],
    with_lattices: bool,
) -> dict[str, Any]:
    """summary.json's scores and counts (the caller adds num_jobs, the search info, timing)."""
    scored = [u for u in res.utts]  # reference utterances that count (empty ones skipped)
    oracle = (
        sum(ok[u].oracle_errors if u in ok else len(normalize_text(ref[u])) for u in scored)
        if with_lattices
        else None
    )
    frames = sum(r.frames for r in ok.values())
    arcs = sum(r.lattice.num_arcs for r in ok.values() if r.lattice is not None)
    return {
        **{k: v for k, v in res.to_dict().items() if k != "missing"},
        "lm_weight": chosen[0],
        "word_ins_penalty": chosen[1],
        "chosen_on": str(md.chosen_from.source) if md.chosen_from else "this set",
        "oracle_errors": oracle,
        "oracle_cer": (round(100.0 * oracle / res.ref_len, 4) if res.ref_len else 0.0)
        if oracle is not None
        else None,
        "lattice_density": (round(arcs / frames, 4) if frames else 0.0) if with_lattices else None,
        "lattice_arcs": arcs,
        "frames": frames,
        "audio_s": round(frames * 0.01, 2),
        "decoded": len(ok),
        "failed": {u: r.error for u, r in sorted(md.utts.items()) if r.error},
        "not_decoded": sorted(set(ref) - set(md.utts)),
        "lm_weights": sorted({g[0] for g in md.grid}),
        "word_ins_penalties": sorted({g[1] for g in md.grid}),
    }
