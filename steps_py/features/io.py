"""Reading features written by `python -m steps_py.features.compute`: `FeatureReader(data_dir, kind, cmvn=True)`.

    reader = FeatureReader("data/train", "fbank")
    x = reader[reader.utts[0]]          # float32 (T, 40), speaker mean removed
    for utt, x in reader.items(): ...   # a read-only Mapping[str, np.ndarray]

Matrices come from `data/<set>/<kind>/feats.scp` through kaldi-native-io's
RandomAccessFloatMatrixReader. With `cmvn=True` the mean of the CMVN stats is subtracted,
as Kaldi's `apply-cmvn --norm-vars=false`: the speaker's (`--utt2spk=...`) or, when the
features step computed stats per utterance (``--cmvn utterance``, recorded in `.done`), the utterance's own.
If the data dir was moved after its features were computed (the scp holds absolute paths), the arks are
looked up next to feats.scp instead.

Note: kaldi-native-io's random-access readers return numpy views of one internal buffer
that the next read overwrites; `FeatureReader` always returns a fresh array.
"""

from __future__ import annotations

import json
import os
import tempfile
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path

import kaldi_native_io as kio
import numpy as np

from steps_py.data.kaldi_dir import read_kaldi_map
from steps_py.features.cmvn import apply_mean_norm, read_cmvn, speaker_mean


def _scp_entries(scp: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    with open(scp, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                utt, loc = line.split(maxsplit=1)
                out[utt] = loc.strip()
    return out


def _relocated_scp(feat_dir: Path, entries: dict[str, str]) -> str | None:
    """If the arks named in feats.scp are gone but sit in feat_dir, write an scp pointing there."""
    first = next(iter(entries.values()))
    ark = first.rsplit(":", 1)[0]
    if os.path.exists(ark) or not (feat_dir / os.path.basename(ark)).exists():
        return None
    fd, tmp = tempfile.mkstemp(prefix="feats.", suffix=".scp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for utt, loc in entries.items():
            path, offset = loc.rsplit(":", 1)
            f.write(f"{utt} {feat_dir / os.path.basename(path)}:{offset}\n")
    return tmp


class FeatureReader(Mapping[str, np.ndarray]):
    """Random access to one data dir's features: `reader[utt] -> float32 (T, D)`."""

    def __init__(
        self, data_dir: str | os.PathLike[str], kind: str = "fbank", cmvn: bool = True
    ) -> None:
        self.data_dir = Path(data_dir)
        self.kind = kind
        self.feat_dir = self.data_dir / kind
        scp = self.feat_dir / "feats.scp"
        if not scp.is_file():
            raise FileNotFoundError(
                f"{scp} not found; run `python -m steps_py.features.compute --data {self.data_dir} --kind {kind}`"
            )
        entries = _scp_entries(scp)
        if not entries:
            raise ValueError(f"{scp} is empty")
        self.utts: list[str] = sorted(entries)
        self._utt_set = frozenset(entries)
        tmp_scp = _relocated_scp(self.feat_dir, entries)
        if tmp_scp is not None:
            weakref.finalize(self, os.unlink, tmp_scp)
        self._reader = kio.RandomAccessFloatMatrixReader(f"scp:{tmp_scp or scp}")
        self.dim: int = int(self._reader[self.utts[0]].shape[1])
        self._means: dict[str, np.ndarray] | None = None
        self._utt2spk: dict[str, str] = {}
        self.cmvn_type = "speaker"
        done = self.feat_dir / ".done"
        if done.is_file():
            self.cmvn_type = json.loads(done.read_text(encoding="utf-8")).get("cmvn", "speaker")
        if cmvn:
            if self.cmvn_type == "utterance":
                self._utt2spk = {u: u for u in self.utts}
            else:
                self._utt2spk = read_kaldi_map(self.data_dir / "utt2spk")
            self._means = {spk: speaker_mean(s) for spk, s in read_cmvn(self.feat_dir).items()}
            missing = [u for u in self.utts if self._utt2spk.get(u) not in self._means]
            if missing:
                raise ValueError(
                    f"{self.feat_dir}: {len(missing)} utterances (e.g. {missing[0]}) have no "
                    f"{self.cmvn_type} CMVN stats; re-run python -m steps_py.features.compute with --force"
                )

    def __getitem__(self, utt: str) -> np.ndarray:
        if utt not in self._utt_set:
            raise KeyError(utt)
        x = self._reader[utt]  # a view into the reader's buffer, overwritten by the next read
        if self._means is None:
            return np.array(x, dtype=np.float32, copy=True)
        return apply_mean_norm(x, self._means[self._utt2spk[utt]])  # a new array

    def __iter__(self) -> Iterator[str]:
        return iter(self.utts)

    def __len__(self) -> int:
        return len(self.utts)

    def __contains__(self, utt: object) -> bool:
        return utt in self._utt_set

    def num_frames(self, utt: str) -> int:
        return int(self._reader[utt].shape[0])
