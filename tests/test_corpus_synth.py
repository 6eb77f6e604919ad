"""Tests of the synthetic corpus generator (stage 0): text generator, speakers, channel,
espeak binding and an end-to-end tiny corpus (determinism, manifests, LM text)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from pypinyin import Style, pinyin

from local.synth import config as synth_config
from local.synth.channel import apply_channel, coloured_noise, to_int16
from local.synth.espeak import Espeak, EspeakError
from local.synth.numbers import int_to_hanzi
from local.synth.speakers import draw_speakers
from local.synth.templates import SentenceGenerator, sentence_bucket

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "egs/synth/conf/corpus_tiny.json"
DEFAULT = ROOT / "egs/synth/conf/corpus.json"


@pytest.fixture(scope="module")
def gen() -> SentenceGenerator:
    return SentenceGenerator(**synth_config.load_config(DEFAULT)["lexicon"])


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "零"),
        (7, "七"),
        (10, "十"),
        (15, "十五"),
        (20, "二十"),
        (105, "一百零五"),
        (110, "一百一十"),
        (1010, "一千零一十"),
        (2006, "二千零六"),
        (10000, "一万"),
        (20010, "二万零一十"),
        (100000, "十万"),
        (305000, "三十万五千"),
        (1000001, "一百万零一"),
        (99999999, "九千九百九十九万九千九百九十九"),
    ],
)
def test_int_to_hanzi(n: int, text: str) -> None:
    assert int_to_hanzi(n) == text


def test_generator_capacity_and_pronounceable(gen: SentenceGenerator) -> None:
    rng = np.random.default_rng(123)
    sentences = {gen.generate(rng)[0] for _ in range(8000)}
    chars = set("".join(sentences))
    assert len(sentences) >= 5000
    assert len(chars) >= 1500
    for ch in chars:  # every character is a hanzi with a pypinyin reading (not echoed back)
        reading = pinyin(ch, style=Style.TONE3, errors=lambda _: ["?"])[0][0]
        assert "\u4e00" <= ch <= "\u9fff" and reading != "?" and reading != ch, ch


def test_buckets_partition_sentences(gen: SentenceGenerator) -> None:
    fr = synth_config.DEFAULT_CONFIG["text_buckets"]
    rng = np.random.default_rng(5)
    stream = gen.stream(rng, bucket="dev", fractions=fr)
    dev = [next(stream)[0] for _ in range(50)]
    assert len(set(dev)) == 50
    assert all(sentence_bucket(s, fr) == "dev" for s in dev)
    counts: dict[str, int] = {}
    for _ in range(2000):
        b = sentence_bucket(gen.generate(rng)[0], fr)
        counts[b] = counts.get(b, 0) + 1
    assert set(counts) == {"train", "dev", "test", "lm"}
    assert counts["train"] > counts["lm"] > counts["dev"]


def test_default_speakers_disjoint_and_fixed() -> None:
    cfg = synth_config.load_config(DEFAULT)
    minimum = {"train": 40, "dev": 8, "test": 8}
    ids: dict[str, set[str]] = {}
    for split, n in minimum.items():
        assert cfg["splits"][split]["speakers"] >= n
        spk = draw_speakers(split, cfg["splits"][split]["speakers"], 0, cfg["speakers"])
        assert spk == draw_speakers(split, cfg["splits"][split]["speakers"], 0, cfg["speakers"])
        ids[split] = {s.id for s in spk}
        assert len(ids[split]) == len(spk)
        assert len({(s.voice, s.pitch, s.pitch_range, s.rate) for s in spk}) == len(spk)
    assert (
        not ids["train"] & ids["dev"]
        and not ids["train"] & ids["test"]
        and not ids["dev"] & ids["test"]
    )


def test_noise_colours_have_expected_slopes() -> None:
    rng = np.random.default_rng(0)
    ratios = {}
    for kind in ("white", "pink", "brown"):
        x = coloured_noise(kind, 32000, rng)
        assert abs(np.mean(x**2) - 1.0) < 1e-6
        p = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(len(x), 1 / 16000)
        ratios[kind] = p[(f > 100) & (f < 200)].mean() / p[(f > 4000) & (f < 8000)].mean()
    assert 0.7 < ratios["white"] < 1.4
    assert ratios["brown"] > 20 * ratios["pink"] and ratios["pink"] > 10 * ratios["white"]


@pytest.mark.parametrize("kind", ["white", "pink", "brown", "babble"])
def test_mixture_snr_matches_request(kind: str) -> None:
    engine = Espeak.get()
    syn = engine.synth("导航到北京市朝阳区", "cmn+f2", 170, 50, 50, rand_seed=1)
    bank = [
        engine.synth(t, "cmn+m3", 180, 40, 60, rand_seed=2).samples / 32768.0
        for t in ("打开微信", "明天天气怎么样")
    ]
    bank = [b / np.sqrt(np.mean(b**2)) for b in bank]
    cfg = dict(
        synth_config.DEFAULT_CONFIG["channel"],
        noise_types={kind: 1.0},
        snr_bands=[[7.0, 7.0, 1.0]],
        reverb_prob=1.0,
    )
    res = apply_channel(syn.samples, syn.sample_rate, cfg, np.random.default_rng(3), bank)
    assert res.info["noise_type"] == kind and res.info["snr_db"] == 7.0
    written = to_int16(res.audio).astype(np.float64) / 32767.0
    measured = 10 * np.log10(np.mean(res.speech**2) / np.mean((written - res.speech) ** 2))
    assert abs(measured - 7.0) < 0.2
    assert np.abs(written).max() <= 0.99


def test_espeak_load_failure_is_clear(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import espeakng_loader

    bogus = tmp_path / "libespeak-ng.so"
    bogus.write_bytes(b"not a library")
    monkeypatch.setattr(espeakng_loader, "get_library_path", lambda: str(bogus))
    with pytest.raises(EspeakError, match="cannot load libespeak-ng"):
        Espeak()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"channel": {"snr": 3}}, "channel.snr"),
        ({"speakers": {"voices": {"m": ["m1", "nosuchvariant"], "f": ["f1"]}}}, "nosuchvariant"),
        ({"splits": {"dev": {"hours": 0}}}, "splits.dev"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, override: dict, message: str) -> None:
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps(override))
    with pytest.raises(synth_config.ConfigError, match=message):
        synth_config.load_config(bad)


def _hashes(d: Path) -> dict[str, str]:
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file() and p.name != ".done"
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], dict[str, str]]:
    from local.synth.generate import generate_corpus

    out = tmp_path_factory.mktemp("synth") / "corpus"
    cfg = synth_config.load_config(TINY)
    generate_corpus(out, cfg, seed=0, nj=2)
    first = _hashes(out)
    generate_corpus(out, cfg, seed=0, nj=1, force=True)
    return out, first, _hashes(out)


def test_tiny_corpus_is_deterministic(tiny: tuple[Path, dict[str, str], dict[str, str]]) -> None:
    out, first, second = tiny
    assert any(k.endswith(".wav") for k in first)
    assert first == second  # same seed + config, nj=2 vs nj=1: byte-identical files


def test_tiny_corpus_manifests_and_lm_text(
    tiny: tuple[Path, dict[str, str], dict[str, str]],
) -> None:
    import soundfile as sf
    from lhotse import RecordingSet, SupervisionSet, load_manifest

    out = tiny[0]
    cfg = synth_config.load_config(TINY)
    report = json.loads((out / "report.json").read_text())
    spoken: set[str] = set()
    speakers: dict[str, set[str]] = {}
    for split in ("train", "dev", "test"):
        recs = load_manifest(out / "manifests" / f"recordings_{split}.jsonl.gz")
        sups = load_manifest(out / "manifests" / f"supervisions_{split}.jsonl.gz")
        assert isinstance(recs, RecordingSet) and isinstance(sups, SupervisionSet)
        assert len(recs) == len(sups) == report["splits"][split]["utterances"] > 0
        rec_ids = {r.id for r in recs}
        hours = sum(r.duration for r in recs) / 3600
        assert hours >= cfg["splits"][split]["hours"]
        assert abs(hours - report["splits"][split]["hours"]) < 1e-3
        for rec in recs:
            info = sf.info(rec.sources[0].source)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert info.frames == rec.num_samples
        for sup in sups:
            assert sup.recording_id in rec_ids
            assert sup.language == "Chinese" and sup.text and " " not in sup.text
            assert all("\u4e00" <= c <= "\u9fff" for c in sup.text)
            times = [t for _, t in sup.custom["phone_times"]]
            assert times == sorted(times) and times[0] >= 0 and times[-1] < sup.duration
            assert sup.custom["noise_type"] in ("white", "pink", "brown", "babble")
        speakers[split] = {s.speaker for s in sups}
        assert len(speakers[split]) == cfg["splits"][split]["speakers"]
        spoken |= {s.text for s in sups}
    assert not speakers["train"] & (speakers["dev"] | speakers["test"])
    lm = (out / "lm_text.txt").read_text(encoding="utf-8").splitlines()
    assert len(lm) == cfg["lm_sentences"] == len(set(lm))
    assert not spoken & set(lm)
    assert "SNR histogram" in (out / "report.txt").read_text(encoding="utf-8")


def test_tiny_corpus_skips_when_done(tiny: tuple[Path, dict[str, str], dict[str, str]]) -> None:
    from local.synth.generate import generate_corpus

    out = tiny[0]
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    generate_corpus(out, synth_config.load_config(TINY), seed=0, nj=1)
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
