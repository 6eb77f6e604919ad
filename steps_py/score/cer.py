"""Character error rate (CER): alignment, counts and Kaldi-style reports.

Used by every decoder (GMM and NN) and by the scoring CLI (`python -m steps_py.score`).
Both sides are normalised with `steps_py.score.normalize.normalize_text` and aligned with
`kaldialign.align` (Levenshtein alignment, Kaldi's tie-breaking), so the counts match
Kaldi's `compute-wer`. The summary line has Kaldi's format::

    %CER 12.34 [ 56 / 454, 7 ins, 8 del, 41 sub ]

Rules: an utterance of the reference that is missing from the hypothesis counts as all
deletions and is listed in `CerResult.missing`; a hypothesis utterance that is not in the
reference is an error (`ScoreError` naming the ids and the file); an empty reference
(after normalisation) is an error naming the utterance, or, with `empty_ref="skip"`,
is left out and listed in `CerResult.skipped_empty_ref`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import kaldialign

from steps_py.score.normalize import normalize_text

EPS = "***"


class ScoreError(ValueError):
    """Scoring input is inconsistent; the message names the file/utterances and the fix."""


@dataclass
class UttScore:
    """Alignment of one utterance: `ops` holds C (correct), S, I, D per aligned pair."""

    utt: str
    ref: list[str]
    hyp: list[str]
    pairs: list[tuple[str, str]]
    ops: list[str]
    ins: int
    dels: int
    subs: int

    @property
    def errors(self) -> int:
        return self.ins + self.dels + self.subs

    @property
    def corr(self) -> int:
        return self.ops.count("C")


@dataclass
class CerResult:
    """Corpus-level CER with per-utterance details."""

    errors: int = 0
    ref_len: int = 0
    ins: int = 0
    dels: int = 0
    subs: int = 0
    utts: dict[str, UttScore] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    skipped_empty_ref: list[str] = field(default_factory=list)

    @property
    def cer(self) -> float:
        """CER in percent (0 when the reference is empty)."""
        return 100.0 * self.errors / self.ref_len if self.ref_len else 0.0

    def line(self, name: str = "CER") -> str:
        return (
            f"%{name} {self.cer:.2f} [ {self.errors} / {self.ref_len}, "
            f"{self.ins} ins, {self.dels} del, {self.subs} sub ]"
        )

    def to_dict(self) -> dict:
        return {
            "cer": round(self.cer, 4),
            "errors": self.errors,
            "ref_len": self.ref_len,
            "ins": self.ins,
            "del": self.dels,
            "sub": self.subs,
            "num_utts": len(self.utts),
            "missing": list(self.missing),
            "skipped_empty_ref": list(self.skipped_empty_ref),
        }


_BOM = "\ufeff"


def read_text(
    path: Path, allow_empty: bool = True, encoding: str = "utf-8", option: str = "--encoding"
) -> dict[str, str]:
    """Read a Kaldi `text` file (`<utt> <transcript...>`); an id alone means an empty transcript.

    Duplicate ids are an error naming the file and line. With `allow_empty=False` an empty
    transcript is an error naming the file, line and utterance.

    Encodings: UTF-8 by default. A UTF-8 byte-order mark (U+FEFF at the start of the file,
    or of a line, as `cat`-ing two files leaves it) is removed and reported, so it never
    becomes part of an utterance id. A UTF-16 file (recognised by its byte-order mark) or
    bytes that are not UTF-8 (GB18030, Latin-1) are a `ScoreError` naming the file and line
    and the fix (`iconv -f GB18030 -t UTF-8`, or `encoding=`/`--encoding gb18030`; `option`
    is the flag the hint names).
    """
    path = Path(path)
    if not path.is_file():
        raise ScoreError(f"{path}: no such file; give a Kaldi text file '<utt> <transcript>'")
    raw = path.read_bytes()
    enc = encoding.lower().replace("_", "-")
    if enc in ("utf-8", "utf8") and raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise ScoreError(
            f"{path} is UTF-16 (it starts with a UTF-16 byte-order mark); convert it "
            f"(iconv -f UTF-16 -t UTF-8 {path}) or pass {option} utf-16"
        )
    try:
        content = raw.decode(encoding)
    except LookupError:
        raise ScoreError(
            f"unknown encoding {encoding!r} for {path}; give a Python codec name such as "
            "utf-8, gb18030 or utf-16"
        ) from None
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ScoreError(
            f"{path}:{line}: not {encoding} (byte 0x{raw[e.start]:02x} at offset {e.start}); "
            f"Kaldi text files are UTF-8: convert it (e.g. iconv -f GB18030 -t UTF-8 {path}) "
            f"or pass {option} gb18030"
        ) from None
    out: dict[str, str] = {}
    boms = []
    for n, rawline in enumerate(content.splitlines(), 1):
        line = rawline
        if line.startswith(_BOM):
            line = line.lstrip(_BOM)
            boms.append(n)
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        utt = parts[0]
        if _BOM in utt:
            raise ScoreError(
                f"{path}:{n}: utterance id {utt!r} contains U+FEFF (a byte-order mark); "
                "remove it from the file"
            )
        text = parts[1].strip() if len(parts) > 1 else ""
        if utt in out:
            raise ScoreError(f"{path}:{n}: duplicate utterance id '{utt}'; ids must be unique")
        if not text and not allow_empty:
            raise ScoreError(
                f"{path}:{n}: utterance '{utt}' has an empty transcript; "
                "remove it or give it a transcript"
            )
        out[utt] = text
    if boms:
        logging.getLogger("score").warning(
            "%s: removed a UTF-8 byte-order mark (U+FEFF) at the start of line(s) %s",
            path,
            ", ".join(map(str, boms[:5])) + (" ..." if len(boms) > 5 else ""),
        )
    return out


def align_units(ref: list[str], hyp: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """Levenshtein alignment of two unit sequences: (pairs with EPS for gaps, ops C/S/I/D)."""
    if not ref and not hyp:
        return [], []
    pairs = [tuple(p) for p in kaldialign.align(ref, hyp, EPS)]
    ops = []
    for r, h in pairs:
        if r == EPS:
            ops.append("I")
        elif h == EPS:
            ops.append("D")
        elif r == h:
            ops.append("C")
        else:
            ops.append("S")
    return pairs, ops  # type: ignore[return-value]


def score_utt(utt: str, ref_units: list[str], hyp_units: list[str]) -> UttScore:
    pairs, ops = align_units(ref_units, hyp_units)
    return UttScore(
        utt=utt,
        ref=ref_units,
        hyp=hyp_units,
        pairs=pairs,
        ops=ops,
        ins=ops.count("I"),
        dels=ops.count("D"),
        subs=ops.count("S"),
    )


def score_texts(
    ref: dict[str, str],
    hyp: dict[str, str],
    *,
    ref_name: str = "ref",
    hyp_name: str = "hyp",
    empty_ref: str = "error",
) -> CerResult:
    """Score hypotheses against references (both `{utt: transcript}`); see the module rules.

    `ref_name`/`hyp_name` (usually file paths) appear in error messages.
    `empty_ref`: "error" (default) or "skip".
    """
    if empty_ref not in ("error", "skip"):
        raise ValueError(f"empty_ref must be 'error' or 'skip', not {empty_ref!r}")
    unknown = sorted(set(hyp) - set(ref))
    if unknown:
        shown = ", ".join(unknown[:10]) + (
            f" ... ({len(unknown)} in all)" if len(unknown) > 10 else ""
        )
        raise ScoreError(
            f"{hyp_name}: {len(unknown)} utterance id(s) not in the reference "
            f"{ref_name}: {shown}; score against the matching reference text"
        )
    res = CerResult()
    for utt in sorted(ref):
        ref_units = normalize_text(ref[utt])
        if not ref_units:
            if empty_ref == "skip":
                res.skipped_empty_ref.append(utt)
                continue
            raise ScoreError(
                f"{ref_name}: utterance '{utt}' has an empty reference (after "
                "normalisation); remove it from the reference or give it a transcript"
            )
        if utt not in hyp:
            res.missing.append(utt)
        u = score_utt(utt, ref_units, normalize_text(hyp.get(utt, "")))
        res.utts[utt] = u
        res.ins += u.ins
        res.dels += u.dels
        res.subs += u.subs
        res.ref_len += len(ref_units)
    res.errors = res.ins + res.dels + res.subs
    return res


def score_files(
    ref_path: Path,
    hyp_path: Path,
    empty_ref: str = "error",
    encoding: str = "utf-8",
    ref_encoding: str = "utf-8",
) -> CerResult:
    """`score_texts` on two Kaldi text files: the hypothesis in `encoding` (another system's
    output may be GB18030), the reference in `ref_encoding` (a data dir's text: UTF-8)."""
    return score_texts(
        read_text(ref_path, encoding=ref_encoding, option="--ref-encoding"),
        read_text(hyp_path, encoding=encoding),
        ref_name=str(ref_path),
        hyp_name=str(hyp_path),
        empty_ref=empty_ref,
    )


def speaker_of(utt: str, utt2spk: dict[str, str] | None = None) -> str:
    """Speaker of an utterance: from utt2spk if given, else the id's prefix before the
    first '-' or '_' (the whole id when it has neither)."""
    if utt2spk is not None and utt in utt2spk:
        return utt2spk[utt]
    for i, c in enumerate(utt):
        if c in "-_":
            return utt[:i]
    return utt


@dataclass
class SpeakerScore:
    speaker: str
    utts: int = 0
    ref_len: int = 0
    corr: int = 0
    ins: int = 0
    dels: int = 0
    subs: int = 0
    utts_with_errors: int = 0

    @property
    def errors(self) -> int:
        return self.ins + self.dels + self.subs

    @property
    def cer(self) -> float:
        return 100.0 * self.errors / self.ref_len if self.ref_len else 0.0


def per_speaker(result: CerResult, utt2spk: dict[str, str] | None = None) -> list[SpeakerScore]:
    """Per-speaker totals (sorted by speaker id)."""
    spk: dict[str, SpeakerScore] = {}
    for utt, u in result.utts.items():
        s = speaker_of(utt, utt2spk)
        acc = spk.setdefault(s, SpeakerScore(s))
        acc.utts += 1
        acc.ref_len += len(u.ref)
        acc.corr += u.corr
        acc.ins += u.ins
        acc.dels += u.dels
        acc.subs += u.subs
        acc.utts_with_errors += int(u.errors > 0)
    return [spk[k] for k in sorted(spk)]


def format_per_utt(result: CerResult) -> str:
    """Kaldi `per_utt` style: ref/hyp/op lines (C/S/I/D, `***` for gaps) and `#csid` counts."""
    lines = []
    for utt in sorted(result.utts):
        u = result.utts[utt]
        width = [max(len(r), len(h), 1) for r, h in u.pairs]
        ref = " ".join(r.ljust(w) for (r, _), w in zip(u.pairs, width, strict=True))
        hyp = " ".join(h.ljust(w) for (_, h), w in zip(u.pairs, width, strict=True))
        op = " ".join(o.ljust(w) for o, w in zip(u.ops, width, strict=True))
        tag = " (missing from hyp)" if utt in set(result.missing) else ""
        lines.append(f"{utt} ref  {ref.rstrip()}")
        lines.append(f"{utt} hyp  {hyp.rstrip()}")
        lines.append(f"{utt} op   {op.rstrip()}")
        lines.append(f"{utt} #csid {u.corr} {u.subs} {u.ins} {u.dels}{tag}")
    return "\n".join(lines) + ("\n" if lines else "")


def format_per_speaker(rows: list[SpeakerScore]) -> str:
    """A plain-text table: speaker, utterances, chars, corr, sub, del, ins, err, CER %, utt-err %."""
    head = f"{'SPKR':<16} {'#UTT':>5} {'#CHR':>6} {'Corr':>6} {'Sub':>5} {'Del':>5} {'Ins':>5} {'Err':>5} {'CER%':>7} {'U.Err%':>7}"
    out = [head]
    tot = SpeakerScore("SUM")
    for r in [*rows, tot]:
        if r is not tot:
            for f in ("utts", "ref_len", "corr", "ins", "dels", "subs", "utts_with_errors"):
                setattr(tot, f, getattr(tot, f) + getattr(r, f))
        uerr = 100.0 * r.utts_with_errors / r.utts if r.utts else 0.0
        out.append(
            f"{r.speaker:<16} {r.utts:>5} {r.ref_len:>6} {r.corr:>6} {r.subs:>5} {r.dels:>5} "
            f"{r.ins:>5} {r.errors:>5} {r.cer:>7.2f} {uerr:>7.2f}"
        )
    return "\n".join(out) + "\n"
