"""Load a data dir for the GMM stage: transcripts to word ids, features with deltas.

Bad items are named, counted and skipped: utterances with no features, with an empty
transcript, or (later, at alignment) too short for their transcript. Words missing from
the lexicon map to the OOV word (lang/oov.txt) and are counted.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from steps_py.cli import progress
from steps_py.data.kaldi_dir import DataDirError, read_kaldi_map
from steps_py.gmm.errors import GmmError
from steps_py.gmm.feats import FeatureSource, add_deltas
from steps_py.gmm.jobs import Utterance
from steps_py.gmm.topo import Lang

log = logging.getLogger(__name__)


@dataclass
class LoadReport:
    skipped: dict[str, str] = field(default_factory=dict)  # utt -> reason
    oov_tokens: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        reasons = Counter(r.split(":")[0] for r in self.skipped.values())
        oov = sum(self.oov_tokens.values())
        return f"skipped {len(self.skipped)} utterances {dict(reasons)}; {oov} tokens mapped to the OOV word ({len(self.oov_tokens)} distinct)"


def load_utterances(
    data_dir: Path, lang: Lang, feats: FeatureSource, deltas: bool = True
) -> tuple[list[Utterance], LoadReport]:
    """Utterances of `data_dir` with transcripts and features (plus deltas), sorted by id."""
    text_path = Path(data_dir) / "text"
    if not text_path.is_file():
        raise GmmError(f"{text_path} not found: run `python -m steps_py.data.prepare` first")
    try:
        text = read_kaldi_map(text_path, allow_empty_value=True)
    except DataDirError as e:
        raise GmmError(str(e)) from None
    have = set(feats.utts)
    report = LoadReport()
    out: list[Utterance] = []
    for utt in progress(sorted(text), desc=f"load {Path(data_dir).name}", unit="utt", leave=False):
        tokens = text[utt].split()
        if utt not in have:
            report.skipped[utt] = (
                "no-features: not in feats.scp (rerun python -m steps_py.features.compute)"
            )
            continue
        if not tokens:
            report.skipped[utt] = "empty-transcript"
            continue
        ids, _ = lang.word_ids(tokens)
        for t in tokens:
            if t not in lang.words:
                report.oov_tokens[t] += 1
        x = feats[utt]
        out.append(Utterance(utt, add_deltas(x) if deltas else x, ids))
    for utt, why in list(report.skipped.items())[:10]:
        log.warning("skipping %s: %s", utt, why)
    return out, report
