"""The name of a trained model: `ModelTag`, the one parser and builder of model tags.

A training run (`python -m steps_py.parallel.train`) writes one file per model,
`final/<tag>.safetensors` (and `epoch<E>/<tag>.safetensors` with --save-epoch-models); a
decode of it is `decode_<tag>_<set>/`. The tags, as the trainer writes them:

| kind | tag | written by |
|---|---|---|
| global | `global` | the sync object's G(T) |
| EMA | `ema-<decay>`, `ema-hl<frames>`, `ema-hl<P>pct` (half-life fraction), with warm-up `ema-warmup-upto-<...>` (the first study: `ema-hl<frames>-warmup`), suffixes `-start<P>pct` (EMA start) and `-bc` (bias correction) | `ema.EmaSpec.label` |
| interfering ablation | `ema-interfering-<the EMA's tag without ema->` | `sync.InterferingEma.label` |
| icefall average | `icefall-avg` | `averagers.IcefallAverage` |
| Kaldi combination | `kaldi-combine` | `averagers.LastModelsCombination` |
| post-hoc EMA | `posthoc-<the EMA's tag without ema->` | `python -m steps_py.parallel.posthoc` |
| epoch-end model | `epoch<E>-<any tag above>` | `--save-epoch-models` |

`is_ema` is true for the EMA kind only (the interfering ablation is not an EMA model of the
paper: it is broadcast); the scoreboard and the study both ask `ModelTag.is_ema`.
A tag of no known form parses as kind `other` and keeps its text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum


class TagKind(StrEnum):
    GLOBAL = "global"
    EMA = "ema"
    INTERFERING = "interfering"
    ICEFALL = "icefall"
    COMBINE = "combine"
    POSTHOC = "posthoc"
    OTHER = "other"


FIXED = {TagKind.GLOBAL: "global", TagKind.ICEFALL: "icefall-avg", TagKind.COMBINE: "kaldi-combine"}
PREFIX = {TagKind.EMA: "ema-", TagKind.INTERFERING: "ema-interfering-", TagKind.POSTHOC: "posthoc-"}

_NUM = r"\d+(?:\.\d*)?(?:e[+-]?\d+)?|\.\d+(?:e[+-]?\d+)?"
_BODY = re.compile(
    rf"(?P<upto>warmup-upto-)?"
    rf"(?:hl(?P<pct>{_NUM})pct|hl(?P<hl>{_NUM})|(?P<decay>{_NUM}))"
    rf"(?P<suffix>-warmup)?(?:-start(?P<start>{_NUM})pct)?(?P<bc>-bc)?"
)
_EPOCH = re.compile(r"epoch(?P<e>\d+)-(?P<rest>.+)")


def format_number(x: float) -> str:
    """1600000 (not 1.6e+06) for integral values, else the shortest form."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def format_percent(fraction: float) -> str:
    return f"{format_number(round(100.0 * fraction, 6))}pct"


@dataclass(frozen=True)
class ModelTag:
    """One model of a run. EMA-like kinds (EMA, interfering, post-hoc) carry exactly one of
    `decay`, `half_life` (frames) or `half_life_fraction` (of the run's frames), and `warmup`
    ("" none, "upto" `ema-warmup-upto-...`, "suffix" the first study's `...-warmup`),
    `start` (fraction of the run) and `bias_correction`. `epoch`: an epoch-end model."""

    kind: TagKind
    decay: float | None = None
    half_life: float | None = None
    half_life_fraction: float | None = None
    warmup: str = ""
    start: float = 0.0
    bias_correction: bool = False
    epoch: int | None = None
    text: str = ""  # kind OTHER only: the tag as found

    # ------------------------------------------------------------------ build
    @classmethod
    def ema(
        cls,
        *,
        decay: float | None = None,
        half_life: float | None = None,
        half_life_fraction: float | None = None,
        warmup: bool = False,
        start: float = 0.0,
        bias_correction: bool = False,
    ) -> ModelTag:
        return cls(
            TagKind.EMA,
            decay=decay,
            half_life=half_life,
            half_life_fraction=half_life_fraction,
            warmup="upto" if warmup else "",
            start=start,
            bias_correction=bias_correction,
        )

    def as_kind(self, kind: TagKind) -> ModelTag:
        """The same EMA profile as another EMA-like kind (interfering, post-hoc)."""
        return replace(self, kind=kind)

    def at_epoch(self, epoch: int | None) -> ModelTag:
        return replace(self, epoch=epoch)

    # ------------------------------------------------------------------ parse / format
    @classmethod
    def parse(cls, text: str) -> ModelTag:
        m = _EPOCH.fullmatch(text)
        if m:
            return cls.parse(m.group("rest")).at_epoch(int(m.group("e")))
        for kind, name in FIXED.items():
            if text == name:
                return cls(kind)
        for kind in (TagKind.INTERFERING, TagKind.POSTHOC, TagKind.EMA):
            body = text.removeprefix(PREFIX[kind])
            b = _BODY.fullmatch(body) if body != text else None
            if b is None:
                continue
            if b.group("upto") and b.group("suffix"):
                break
            pct = b.group("pct")
            return cls(
                kind,
                decay=float(b.group("decay")) if b.group("decay") else None,
                half_life=float(b.group("hl")) if b.group("hl") else None,
                half_life_fraction=float(pct) / 100.0 if pct else None,
                warmup="upto" if b.group("upto") else "suffix" if b.group("suffix") else "",
                start=float(b.group("start")) / 100.0 if b.group("start") else 0.0,
                bias_correction=bool(b.group("bc")),
            )
        return cls(TagKind.OTHER, text=text)

    def __str__(self) -> str:
        epoch = "" if self.epoch is None else f"epoch{self.epoch}-"
        if self.kind == TagKind.OTHER:
            return epoch + self.text
        if self.kind in FIXED:
            return epoch + FIXED[self.kind]
        if self.decay is not None:
            base = f"{self.decay:g}"
        elif self.half_life is not None:
            base = f"hl{format_number(self.half_life)}"
        else:
            base = f"hl{format_percent(self.half_life_fraction or 0.0)}"
        body = {"upto": f"warmup-upto-{base}", "suffix": f"{base}-warmup"}.get(self.warmup, base)
        if self.start:
            body += f"-start{format_percent(self.start)}"
        if self.bias_correction:
            body += "-bc"
        return epoch + PREFIX[self.kind] + body

    @property
    def profile(self) -> str:
        """The EMA part of an EMA-like tag, without `ema-` (summary.json's `ema_decays`)."""
        return str(replace(self, epoch=None)).removeprefix(PREFIX.get(self.kind, ""))

    # ------------------------------------------------------------------ questions
    @property
    def is_ema(self) -> bool:
        """An EMA model of the paper (non-interfering; not the ablation, not post-hoc)."""
        return self.kind == TagKind.EMA

    @property
    def is_plain_half_life(self) -> bool:
        """An EMA-like tag of a half-life in frames alone (no warm-up, start or correction)."""
        return (
            self.half_life is not None
            and not self.warmup
            and not self.start
            and not self.bias_correction
        )


def is_ema(tag: str) -> bool:
    return ModelTag.parse(tag).is_ema
