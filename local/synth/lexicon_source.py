"""Word pools for template slots, read from the dictionary that ships with jieba.

jieba's ``dict.txt`` lists ~349k words with a corpus frequency and a part-of-speech
tag (ICTCLAS tag set: ``ns`` place, ``nr`` person, ``nz`` other proper noun, ``nt``
organisation, ``n`` noun, ``v`` verb, ``a`` adjective ...).  We keep words whose every
character is a CJK ideograph that the Mandarin lexicon (`local.mandarin.pron`,
pypinyin's readings) can pronounce, bucket them by tag and draw
them with probability proportional to ``freq ** power`` (power < 1 flattens the Zipf
curve so that many distinct characters appear).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from local.mandarin import pron


def jieba_dict_path() -> Path:
    """Path of jieba's bundled dictionary (no network)."""
    try:
        import jieba
    except ImportError as e:  # pragma: no cover - dependency missing
        raise RuntimeError("jieba is not installed: pip install jieba") from e
    path = Path(jieba.__file__).parent / "dict.txt"
    if not path.is_file():
        raise RuntimeError(f"jieba dictionary not found at {path}; reinstall jieba")
    return path


@dataclass
class WordPool:
    """Words of one slot with a cumulative sampling distribution."""

    words: list[str]
    cum: np.ndarray

    def draw(self, rng: np.random.Generator) -> str:
        i = int(np.searchsorted(self.cum, rng.random() * self.cum[-1], side="right"))
        return self.words[min(i, len(self.words) - 1)]

    def __len__(self) -> int:
        return len(self.words)


# slot name -> (POS tags, min length, max length)
SLOT_TAGS: dict[str, tuple[tuple[str, ...], int, int]] = {
    "place": (("ns",), 2, 4),
    "person": (("nr",), 2, 3),
    "proper": (("nz", "nt"), 2, 5),
    "noun": (("n",), 2, 3),
    "verb": (("v",), 2, 2),
    "adj": (("a",), 1, 2),
    "thing": (("n", "vn", "nz"), 2, 4),
}


@lru_cache(maxsize=4)
def load_word_pools(
    min_freq: int = 20, power: float = 0.5, max_words: int = 6000
) -> dict[str, WordPool]:
    """Read jieba's dictionary once and build one pool per slot name in `SLOT_TAGS`.

    Each pool keeps at most `max_words` of its most frequent words (>= `min_freq`).
    """
    entries: dict[str, list[tuple[str, int]]] = {name: [] for name in SLOT_TAGS}
    with jieba_dict_path().open(encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) != 3:
                continue
            word, freq_s, tag = parts
            freq = int(freq_s)
            if freq < min_freq or not all(pron.is_pronounceable(c, basic_block=True) for c in word):
                continue
            for name, (tags, lo, hi) in SLOT_TAGS.items():
                if tag in tags and lo <= len(word) <= hi:
                    entries[name].append((word, freq))
    pools = {}
    for name, items in entries.items():
        if not items:
            raise RuntimeError(
                f"jieba dictionary gave no words for slot {name!r}; min_freq={min_freq} too high?"
            )
        items.sort(key=lambda wf: (-wf[1], wf[0]))
        items = items[:max_words]
        weights = np.array([f for _, f in items], dtype=np.float64) ** power
        pools[name] = WordPool([w for w, _ in items], np.cumsum(weights))
    return pools
