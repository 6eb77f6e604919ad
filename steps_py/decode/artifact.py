"""A decode dir as later steps read it: `DecodeDir`, the one reader of what a decode wrote.

``<exp>/decode_<tag>_<set>/`` is written by ``python -m steps_py.decode.nnet`` (a network) or
``python -m steps_py.decode.gmm`` (a GMM), through ``steps_py.decode.decode_dir``, whose
docstring describes every file. The scoreboard, the study, ``decode.bundle``, a test decode
(``--lm-weight-from``) and ``benchmarks/check_decodes.py`` read it only through this class:
its ``summary.json``, the ``cer_<lmwt>_<wip>`` files, ``ref.txt``/``hyp.txt``/``cer``, the
chosen ``best_lmwt``/``best_wip`` and the lattices ``lat.<job>.gz``. A missing or damaged
file is a `DecodeDirError` that names the command that writes it.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steps_py.decode.inputs import Chosen, DecodeError, format_penalty, format_weight
from steps_py.score.cer import CerResult, ScoreError, score_files

log = logging.getLogger("decode")

PRODUCER = "python -m steps_py.decode.nnet (a network) or steps_py.decode.gmm (a GMM)"

_NAME = re.compile(r"^decode(?:_(?P<tag>.+?))?_(?P<set>[^_]+)$")
_CER_LINE = re.compile(r"%[A-Z]+\s+([0-9.]+)\s+\[\s*(\d+)\s*/\s*(\d+)")
_KALDI_WER = re.compile(r"%WER\s+([0-9.]+)\s")


class DecodeDirError(DecodeError):
    """A decode dir lacks a file or holds a damaged one; the message names the decode command."""


@dataclass
class DecodeScore:
    """CER of one decode dir; `result` (per-utterance details) when ref/hyp texts exist."""

    cer: float
    result: CerResult | None
    summary: dict[str, Any] = field(default_factory=dict)  # the decode dir's summary.json

    def _number(self, v: Any) -> float | None:
        return float(v) if isinstance(v, (int, float)) else None

    @property
    def oracle(self) -> float | None:
        return self._number(self.summary.get("oracle_cer"))

    @property
    def density(self) -> float | None:
        return self._number(self.summary.get("lattice_density"))

    @property
    def rtf(self) -> float | None:
        return self._number((self.summary.get("timing") or {}).get("rtf_per_core"))

    @property
    def chosen(self) -> str | None:
        lw, p = self.summary.get("lm_weight"), self.summary.get("word_ins_penalty")
        return (
            f"{lw:g}/{p:g}"
            if isinstance(lw, (int, float)) and isinstance(p, (int, float))
            else None
        )


@dataclass(frozen=True)
class DecodeDir:
    """``decode[_<tag>]_<set>/`` of a run or GMM exp dir."""

    path: Path

    SUMMARY = "summary.json"
    REF, HYP, CER = "ref.txt", "hyp.txt", "cer"
    BEST_LMWT, BEST_WIP = "best_lmwt", "best_wip"
    CER_FILES = "cer_*"  # cer_<lmwt>_<wip>: compute-wer's lines, as Kaldi's score.sh
    LATTICES = "lat.*.gz"  # lat.<job>.gz, one per job
    FILES = (SUMMARY, REF, HYP, CER, BEST_LMWT, BEST_WIP, "cer_<lmwt>_<wip>", "lat.<job>.gz")

    @classmethod
    def of(cls, exp_dir: Path, tag: str, data_set: str) -> DecodeDir:
        return cls(Path(exp_dir) / (f"decode_{tag}_{data_set}" if tag else f"decode_{data_set}"))

    @staticmethod
    def parse_name(name: str) -> tuple[str, str] | None:
        """(tag, set) of a decode dir's name (tag "" for ``decode_<set>``), None for others."""
        m = _NAME.match(name)
        return None if m is None else (m.group("tag") or "", m.group("set"))

    @staticmethod
    def cer_name(lmwt: float, wip: float) -> str:
        return f"cer_{format_weight(lmwt)}_{format_penalty(wip)}"

    def _missing(self, name: str) -> DecodeDirError:
        return DecodeDirError(f"{self.path / name} not found; decode with {PRODUCER}")

    # ------------------------------------------------------------------ summary.json
    def summary(self, missing_ok: bool = False, damaged_ok: bool = False) -> dict[str, Any]:
        """summary.json ({} when missing and `missing_ok`, or damaged and `damaged_ok`)."""
        p = self.path / self.SUMMARY
        if not p.is_file():
            if missing_ok:
                return {}
            raise self._missing(self.SUMMARY)
        try:
            obj = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            if damaged_ok:
                return {}
            raise DecodeDirError(f"{p}: unreadable ({e}); decode again with {PRODUCER}") from None
        if not isinstance(obj, dict):
            if damaged_ok:
                return {}
            raise DecodeDirError(f"{p}: not a JSON object; decode again with {PRODUCER}")
        return obj

    # ------------------------------------------------------------------ scoring files
    def cer_files(self) -> list[Path]:
        """The ``cer_<lmwt>_<wip>`` files, sorted by name."""
        return sorted(self.path.glob(self.CER_FILES))

    def cer_by_file(self) -> dict[str, str]:
        """{file name: the %WER value as written} of every ``cer_*`` file."""
        return {p.name: p.read_text(encoding="utf-8").split()[1] for p in self.cer_files()}

    def best_kaldi_line(self) -> str | None:
        """``grep WER dd/cer_* | utils/best_wer.sh``: the lowest %WER line of the ``cer_*``
        files (the first in file order on ties) with the file's name after it."""
        best: tuple[float, str] | None = None
        for f in sorted(self.cer_files(), key=_cer_file_order):
            for line in f.read_text(encoding="utf-8").splitlines():
                m = _KALDI_WER.match(line)
                if m and (best is None or float(m.group(1)) < best[0]):
                    best = (float(m.group(1)), f"{line} {f}")
        return None if best is None else best[1]

    def scored_files(self) -> list[Path]:
        """The files a score of this dir depends on (for fingerprints)."""
        names = (self.REF, self.HYP, self.CER, self.SUMMARY)
        return [self.path / n for n in names if (self.path / n).is_file()] + self.cer_files()

    def lattices(self) -> list[Path]:
        return sorted(self.path.glob(self.LATTICES))

    def score(self) -> DecodeScore | None:
        """CER from ref.txt/hyp.txt, else from the `cer` line; None (logged) if neither."""
        ref, hyp, cer = (self.path / n for n in (self.REF, self.HYP, self.CER))
        if ref.is_file() and hyp.is_file():
            try:
                res = score_files(ref, hyp, empty_ref="skip")
                return DecodeScore(res.cer, res, self.summary(missing_ok=True, damaged_ok=True))
            except ScoreError as e:
                log.warning("%s: cannot rescore (%s); trying its cer file", self.path, e)
        if cer.is_file():
            m = _CER_LINE.search(cer.read_text(encoding="utf-8"))
            if m:
                s = self.summary(missing_ok=True, damaged_ok=True)
                return DecodeScore(float(m.group(1)), None, s)
        log.warning("%s: no ref.txt/hyp.txt or cer line; left out", self.path)
        return None

    # ------------------------------------------------------------------ the dev choice
    def chosen(self) -> Chosen:
        """The (LM weight, penalty) this dev decode chose: ``best_lmwt`` and ``best_wip``."""
        d = self.path
        p = d / self.BEST_LMWT
        if not p.is_file():
            raise DecodeDirError(
                f"{p} not found; decode the dev set first and pass its decode dir with "
                "--lm-weight-from"
            )
        try:
            lmwt = float(p.read_text(encoding="utf-8").split()[0])
            q = d / self.BEST_WIP
            wip = float(q.read_text(encoding="utf-8").split()[0]) if q.is_file() else 0.0
        except (ValueError, IndexError):
            raise DecodeDirError(
                f"{d}: best_lmwt/best_wip must each hold one number; decode the dev set again "
                "with --force"
            ) from None
        if lmwt <= 0:
            raise DecodeDirError(f"{p}: LM weight {lmwt:g} is not positive")
        return Chosen(lmwt, wip, d)


def _cer_file_order(f: Path) -> tuple[float, float, str]:
    parts = f.name.split("_")
    try:  # penalty, then LM weight, as score.sh loops
        return float(parts[2]), float(parts[1]), f.name
    except (IndexError, ValueError):
        return math.inf, math.inf, f.name
