"""Tiny corpora for the stage-1 tests: Kaldi data dirs of short tones with Mandarin text,
a small pronunciation lexicon, and a copy to damage (`damaged_copy`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from local.mandarin.lexicon import pinyin_lexicon
from steps_py.data.prepare import main

GOOD_TEXT = "今天天气很好"
LEX_CHARS = "今天气很好啊你北京上海下雨导航到播放周杰伦的歌"
SETS = ("train", "dev", "test")

Utts = dict[str, tuple[str, str, Path]]  # utt -> (speaker, text, wav)


def write_lexicon(path: Path, chars: str = LEX_CHARS) -> Path:
    """A small pronunciation lexicon (the Mandarin one, restricted to `chars`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(pinyin_lexicon(chars).to_text(), encoding="utf-8")
    return path


def tone(
    path: Path, seconds: float = 1.0, sr: int = 16000, seed: int = 0, channels: int = 1
) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(t.size)
    if channels > 1:
        x = np.stack([x * (c + 1) / channels for c in range(channels)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), sr, subtype="PCM_16")
    return path


def kaldi_set(d: Path, utts: Utts, relative: bool = False) -> None:
    """Write wav.scp, text, utt2spk (wav paths relative to `d` if `relative`)."""
    d.mkdir(parents=True, exist_ok=True)

    def path(w: Path) -> str:
        return str(Path("..") / ".." / w.relative_to(d.parent.parent)) if relative else str(w)

    (d / "wav.scp").write_text("".join(f"{u} {path(w)}\n" for u, (_, _, w) in utts.items()))
    (d / "text").write_text(
        "".join(f"{u} {t}\n" for u, (_, t, _) in utts.items()), encoding="utf-8"
    )
    (d / "utt2spk").write_text("".join(f"{u} {s}\n" for u, (s, _, _) in utts.items()))


def good_utts(root: Path, set_name: str, n: int = 25) -> Utts:
    out = {}
    for i in range(n):
        spk = f"{set_name}spk{i % 3}"
        utt = f"{spk}-u{i:03d}"
        out[utt] = (spk, GOOD_TEXT, tone(root / "wav" / f"{utt}.wav", seconds=0.5, seed=i))
    return out


def kaldi_corpus(root: Path, n: int = 25, relative: bool = False) -> dict[str, Utts]:
    """`root/in/{train,dev,test}` Kaldi dirs of `n` good utterances each, wavs in `root/wav`."""
    sets = {s: good_utts(root, s, n) for s in SETS}
    for s, utts in sets.items():
        kaldi_set(root / "in" / s, utts, relative=relative)
    return sets


def damaged_copy(tiny: Path, dst: Path) -> Path:
    """A copy of a `kaldi_corpus(..., relative=True)` root to damage; returns the copy."""
    shutil.copytree(tiny, dst)
    return dst


def run_prepare(root: Path, *extra: str) -> int:
    """Stage 1 on `root/in` into `root/data`, with the small lexicon."""
    lex = write_lexicon(root / "lexicon.txt")
    return main(
        [
            "--kaldi-dirs",
            str(root / "in"),
            "--out",
            str(root / "data"),
            "--nj",
            "1",
            "--lexicon",
            str(lex),
            *extra,
        ]
    )
