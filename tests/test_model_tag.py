"""ModelTag: the one parser and builder of model tags (steps_py/model_tag.py)."""

from __future__ import annotations

import pytest

from steps_py.model_tag import ModelTag, TagKind, is_ema
from steps_py.parallel.ema import EmaSpec, ema_specs

ROUND_TRIP = {
    "global": (TagKind.GLOBAL, {}),
    "icefall-avg": (TagKind.ICEFALL, {}),
    "kaldi-combine": (TagKind.COMBINE, {}),
    "ema-0.99": (TagKind.EMA, {"decay": 0.99}),
    "ema-hl1600000": (TagKind.EMA, {"half_life": 1.6e6}),
    "ema-hl0.5pct": (TagKind.EMA, {"half_life_fraction": 0.005}),
    "ema-warmup-upto-hl400000": (TagKind.EMA, {"half_life": 4e5, "warmup": "upto"}),
    "ema-hl400000-warmup": (TagKind.EMA, {"half_life": 4e5, "warmup": "suffix"}),
    "ema-hl2pct-start10pct": (TagKind.EMA, {"half_life_fraction": 0.02, "start": 0.1}),
    "ema-hl100000-bc": (TagKind.EMA, {"half_life": 1e5, "bias_correction": True}),
    "ema-interfering-hl100000": (TagKind.INTERFERING, {"half_life": 1e5}),
    "ema-interfering-warmup-upto-0.999": (TagKind.INTERFERING, {"decay": 0.999, "warmup": "upto"}),
    "posthoc-hl12500": (TagKind.POSTHOC, {"half_life": 12500.0}),
    "epoch3-ema-hl25000": (TagKind.EMA, {"half_life": 25000.0, "epoch": 3}),
    "epoch1-global": (TagKind.GLOBAL, {"epoch": 1}),
    "epoch2-kaldi-combine": (TagKind.COMBINE, {"epoch": 2}),
}


@pytest.mark.parametrize("text", sorted(ROUND_TRIP))
def test_parse_and_format_round_trip(text: str) -> None:
    kind, fields = ROUND_TRIP[text]
    tag = ModelTag.parse(text)
    assert tag == ModelTag(kind, **fields)
    assert str(tag) == text


def test_unknown_tags_keep_their_text() -> None:
    for text in ("foo", "ema-interfering", "ema-", "epoch-global", "decode"):
        tag = ModelTag.parse(text)
        assert tag.kind == TagKind.OTHER and str(tag) == text and not tag.is_ema


def test_the_trainer_labels_are_model_tags() -> None:
    specs = ema_specs([0.99], [1e5], [4e5], half_life_fractions=[0.05])
    specs += [EmaSpec(half_life_fraction=0.01, start=0.1, bias_correction=True)]
    for spec in specs:
        assert ModelTag.parse(spec.label) == spec.tag
        assert ModelTag.parse(spec.label).is_ema
        assert spec.tag.profile == spec.label.removeprefix("ema-")
    assert str(specs[1].tag.as_kind(TagKind.POSTHOC)) == "posthoc-hl100000"


def test_the_interfering_ablation_is_not_an_ema() -> None:
    """The scoreboard and the study ask the same question (issue 22)."""
    assert is_ema("ema-hl100000") and is_ema("ema-0.999") and is_ema("ema-hl1e+06")
    for tag in ("ema-interfering-hl100000", "global", "icefall-avg", "posthoc-hl100000"):
        assert not is_ema(tag)


def test_plain_half_life() -> None:
    assert ModelTag.parse("ema-hl25000").is_plain_half_life
    for t in ("ema-hl25000-bc", "ema-warmup-upto-hl25000", "ema-hl5pct", "ema-0.99"):
        assert not ModelTag.parse(t).is_plain_half_life
