"""Training examples for the DNN and the LSTM, and the reader the training loop uses.

Layout of ``exp/egs/<type>/``::

    info.json            feat_dim, num_pdfs, model_type, context / left_context, chunk,
                         target_delay, frames and examples per split, skipped counts, seed
    priors.npy           log priors from the train pdf counts (floored), float32 [P]
    skipped.txt          <split> <utt> <reason> for every skipped utterance
    train/shard-<k>/     feats.npy    float32 [rows, D]  unspliced CMVN'd fbank rows
                         targets.npy  int32  [rows]      pdf id of each row
                         examples.npy int64  [E, 3]      (row, utt_start_row, utt_end_row)
    dev/shard-0/         the same, for validation
    .done

Utterances are shuffled (seeded) and dealt round-robin into ``--num-shards`` shards (more
if needed to keep a shard under 2M frames, which bounds the writer's memory); the
examples of a shard are shuffled once at write time. An example is stored as a row index
plus the bounds of its utterance, so splicing / chunking happens at read time from the
small unspliced feature array (gathering 11 rows of 40 floats per frame is cheap):

* DNN example ``row``: ``x`` = rows ``row-context .. row+context`` clamped to the
  utterance (edge frames repeated), flattened to ``(2*context+1)*D``; ``y`` = its pdf.
* LSTM example ``row`` = first labelled frame ``c`` of a chunk (chunks start every
  ``chunk`` frames; the last one ends at the utterance end, overlapping its neighbour):
  ``x`` = rows ``c+delay-left .. c+delay+chunk-1`` (``left+chunk`` rows, clamped);
  ``y`` = pdfs of rows ``c .. c+chunk-1`` (clamped): the model output at frame ``f``
  predicts the label of ``f - delay``.

``EgsReader`` (any number of workers N, chosen at read time): minibatches are consecutive
runs of ``batch_size`` examples of a shard, after a per-epoch permutation of the shard's
examples seeded by (seed, epoch, shard); all minibatches of all shards are put in one list
permuted by (seed, epoch); worker r takes entries r, r+N, r+2N, ... For "train" every
worker gets the same number ``M // N`` of minibatches (the M % N left over, and the partial
last minibatch of each shard, are different examples every epoch); "dev" covers every
example exactly once (last minibatches may be smaller).

Usage::

    python -m steps_py.nnet.egs --feats data/train --ali exp/mono_ali/train --model-type dnn \\
        --out exp/egs/dnn --dev-feats data/dev --dev-ali exp/mono_ali/dev --context 5
    # a Kaldi experiment's alignments instead (final.mdl + ali.*.gz or *.ali; pdfs from final.mdl)
    python -m steps_py.nnet.egs --feats data/train --ali-dir /kaldi/egs/x/s5/exp/tri5a_ali \\
        --model-type dnn --out exp/egs/dnn --dev-feats data/dev

    reader = EgsReader("exp/egs/dnn", rank=0, world_size=4, batch_size=256, seed=1)
    for epoch in range(reader.epoch, num_epochs):
        reader.set_epoch(epoch)          # keeps the position if resuming this epoch
        for x, y in reader:              # x float32 [B, 11*40] (lstm: [B, L+C, D]); y int64
            ...
            ckpt["egs"] = reader.state_dict()   # position of the NEXT minibatch
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from steps_py.cli import StepError, add_output_options, dataclass_from_args, progress, step_main
from steps_py.fileio import atomic_path, atomic_write_json, is_done, mark_done
from steps_py.nnet.egs_dir import EgsDir
from steps_py.nnet.priors import log_priors_from_counts, save_log_priors

log = logging.getLogger("nnet.egs")


class EgsError(StepError, ValueError):
    """Examples cannot be written or read; the message names the item and the fix."""


# more skipped utterances than this (no alignment, a length mismatch, NaN features) is an error
MAX_SKIPPED_FRACTION = 0.05
# held-out train utterances as the dev split when --ali-dir has no dev alignments (Kaldi's
# get_egs.sh holds out 300 as its "valid" subset)
HELD_OUT_UTTS = 300


@dataclass
class EgsParams:
    model_type: str = "dnn"
    context: int = 5
    chunk: int = 20
    left_context: int = 20
    target_delay: int = 5
    num_shards: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model_type not in ("dnn", "lstm"):
            raise EgsError(f"model type must be dnn or lstm, got '{self.model_type}'")
        if self.context < 0 or self.chunk < 1 or self.left_context < 0 or self.target_delay < 0:
            raise EgsError("context, left_context and target_delay must be >= 0 and chunk >= 1")
        if self.num_shards < 1:
            raise EgsError("num_shards must be >= 1")


class AlignmentMap(dict[str, np.ndarray]):
    """Per-utterance pdf ids, and the utterances the aligner reported it could not align."""

    not_aligned: frozenset[str] = frozenset()


@dataclass
class SplitStats:
    utts: int = 0
    frames: int = 0
    examples: int = 0
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, utt: str, reason: str) -> None:
        self.skipped.setdefault(reason, []).append(utt)


def chunk_starts(num_frames: int, chunk: int) -> list[int]:
    """Label start frames of the chunks of an utterance: every `chunk`, last one ends at the end."""
    if num_frames <= chunk:
        return [0]
    starts = list(range(0, num_frames - chunk + 1, chunk))
    if starts[-1] + chunk < num_frames:
        starts.append(num_frames - chunk)
    return starts


def checked_utterance(
    utt: str,
    get_feats: Callable[[str], np.ndarray],
    alignments: Mapping[str, np.ndarray],
    num_pdfs: int,
    feat_dim: int,
    stats: SplitStats,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The features and pdf ids of ``utt``, or None (counted in ``stats``) when it is skipped."""
    ali = alignments.get(utt)
    if ali is None:  # the aligner's own failures are reported (and capped) by the aligner
        failed = utt in getattr(alignments, "not_aligned", ())
        stats.skip(utt, "alignment_failed" if failed else "no_alignment")
        return None
    try:
        f = np.asarray(get_feats(utt), dtype=np.float32)
    except KeyError:
        stats.skip(utt, "no_features")
        return None
    if f.ndim != 2 or f.shape[0] == 0:
        stats.skip(utt, "empty_features")
        return None
    if feat_dim >= 0 and f.shape[1] != feat_dim:
        raise EgsError(
            f"utterance {utt}: feature dim {f.shape[1]} differs from {feat_dim}; "
            "recompute the features of this set with one configuration"
        )
    if not np.isfinite(f).all():  # a data bug; in training it would look like a divergence
        log.warning(
            "skipping %s: %d of %d feature values are NaN or inf (damaged features or audio)",
            utt,
            int((~np.isfinite(f)).sum()),
            f.size,
        )
        stats.skip(utt, "non_finite_features")
        return None
    if len(ali) != f.shape[0]:
        log.warning(
            "skipping %s: %d alignment frames but %d feature frames", utt, len(ali), f.shape[0]
        )
        stats.skip(utt, "length_mismatch")
        return None
    ali = np.asarray(ali, dtype=np.int64)
    if ali.min() < 0 or ali.max() >= num_pdfs:
        raise EgsError(
            f"utterance {utt}: pdf id {int(ali.max())} outside [0, {num_pdfs}); "
            "pass the right --num-pdfs or re-run the alignment"
        )
    return f, ali


def check_skipped(name: str, s: SplitStats, what: str) -> None:
    """At most ``MAX_SKIPPED_FRACTION`` of a split's utterances may be skipped (those the
    aligner reported as not aligned aside: its own report and limit cover them)."""
    skipped = {r: u for r, u in s.skipped.items() if r != "alignment_failed"}
    nskip = sum(len(u) for u in skipped.values())
    total = nskip + s.utts
    if nskip > MAX_SKIPPED_FRACTION * total:
        counts = ", ".join(f"{len(u)} {r}" for r, u in sorted(skipped.items()))
        first = [u for us in skipped.values() for u in us][:3]
        raise EgsError(
            f"{name}: {nskip} of {total} utterances would be skipped ({counts}; e.g. "
            f"{' '.join(first)}), more than {100 * MAX_SKIPPED_FRACTION:.0f} %: {what} "
            "do not belong to these features (the same set, the same frame shift and "
            "snip-edges); fix the inputs, do not train on what is left"
        )


def write_split(
    out: Path,
    utts: Sequence[str],
    get_feats: Callable[[str], np.ndarray],
    alignments: Mapping[str, np.ndarray],
    num_pdfs: int,
    params: EgsParams,
    num_shards: int,
    shuffle: bool = True,
    desc: str = "egs",
) -> tuple[SplitStats, np.ndarray, int]:
    """Write `out/shard-<k>/` for one split; return (stats, pdf counts, feat_dim)."""
    stats = SplitStats()
    rng = np.random.default_rng([params.seed, 17])
    order = list(utts)
    if shuffle:
        order = [order[i] for i in rng.permutation(len(order))]
    shards: list[list[str]] = [order[k::num_shards] for k in range(num_shards)]
    counts = np.zeros(num_pdfs, dtype=np.int64)
    feat_dim = -1
    bar = progress(total=len(order), desc=desc, unit="utt", leave=False)
    for k, shard_utts in enumerate(shards):
        feats_l: list[np.ndarray] = []
        tgts_l: list[np.ndarray] = []
        exs_l: list[np.ndarray] = []
        row = 0
        for utt in shard_utts:
            bar.update(1)
            got = checked_utterance(utt, get_feats, alignments, num_pdfs, feat_dim, stats)
            if got is None:
                continue
            f, ali = got
            feat_dim = f.shape[1]
            t = f.shape[0]
            start, end = row, row + t
            if params.model_type == "dnn":
                rows = np.arange(start, end, dtype=np.int64)
            else:
                rows = start + np.asarray(chunk_starts(t, params.chunk), dtype=np.int64)
            ex = np.empty((len(rows), 3), dtype=np.int64)
            ex[:, 0], ex[:, 1], ex[:, 2] = rows, start, end
            feats_l.append(f)
            tgts_l.append(ali.astype(np.int32))
            exs_l.append(ex)
            counts += np.bincount(ali, minlength=num_pdfs)
            row = end
            stats.utts += 1
            stats.frames += t
        d = out / f"shard-{k}"
        d.mkdir(parents=True, exist_ok=True)
        dim = max(feat_dim, 0)
        feats = np.concatenate(feats_l) if feats_l else np.zeros((0, dim), np.float32)
        exs = np.concatenate(exs_l) if exs_l else np.zeros((0, 3), np.int64)
        if shuffle:
            exs = exs[rng.permutation(len(exs))]
        np.save(d / "feats.npy", feats)
        np.save(d / "targets.npy", np.concatenate(tgts_l) if tgts_l else np.zeros(0, np.int32))
        np.save(d / "examples.npy", exs)
        stats.examples += len(exs)
    bar.close()
    return stats, counts, feat_dim


def read_kaldi_pdf_alignments(exp_dir: Path) -> tuple[dict[str, np.ndarray], int]:
    """Per-frame pdf ids and the pdf count of a Kaldi exp dir (final.mdl + ali.*.gz or *.ali).

    Transition ids are mapped to pdfs with the dir's final.mdl (steps_py.kaldi.exp_dir), so
    any Kaldi GMM system's alignments (mono, tri5a, ...) can train the networks.
    """
    from steps_py.kaldi.exp_dir import KaldiExpDir

    try:
        exp = KaldiExpDir.open(exp_dir)
        alis = exp.pdf_alignments()
    except StepError as e:
        raise EgsError(str(e)) from None
    log.info(
        "%s: %d Kaldi alignments (%s), %d pdfs from final.mdl",
        exp_dir,
        len(alis),
        " ".join(p.name for p in exp.ali_files[:3]) + (" ..." if len(exp.ali_files) > 3 else ""),
        exp.num_pdfs,
    )
    return alis, exp.num_pdfs


def report_length_mismatch(
    utts: Sequence[str],
    num_frames: Callable[[str], int],
    alignments: Mapping[str, np.ndarray],
    where: Path,
) -> None:
    """Say once, with the typical difference, when alignments and features disagree in length.

    Looks at up to 200 utterances spread over the set (reading features costs time); the
    skipping itself, and its count, happen in `write_split`.
    """
    have = [u for u in utts if u in alignments]
    sample = have[:: max(1, len(have) // 200)]
    diffs = [len(alignments[u]) - num_frames(u) for u in sample]
    bad = [d for d in diffs if d != 0]
    if bad:
        common = max(set(bad), key=bad.count)
        log.warning(
            "%s: %d of %d utterances checked have a different number of alignment and feature frames (most often "
            "%+d) and are skipped. Kaldi's alignments need the features' frame count: same frame shift "
            "and length, sample rate, and snip-edges (Kaldi's default true)",
            where,
            len(bad),
            len(diffs),
            common,
        )


def find_num_pdfs(ali_dir: Path, alignments: Mapping[str, np.ndarray]) -> int:
    for cand in (Path(ali_dir) / "num_pdfs", Path(ali_dir).parent / "num_pdfs"):
        if cand.is_file():
            words = cand.read_text(encoding="utf-8", errors="replace").split()
            if len(words) != 1 or not words[0].isdigit():
                raise EgsError(
                    f"{cand}: expected one integer (the number of pdfs), got {' '.join(words)[:40]!r}; "
                    "re-run python -m steps_py.gmm.align or pass --num-pdfs"
                )
            return int(words[0])
    n = 1 + max((int(a.max()) for a in alignments.values() if len(a)), default=-1)
    log.warning("no num_pdfs file next to %s; using 1 + max pdf id = %d", ali_dir, n)
    return n


MAX_SHARD_FRAMES = 2_000_000  # ~320 MB of 40-dim float32 rows held in memory while writing a shard


def shards_needed(utts: Sequence[str], alignments: Mapping[str, np.ndarray], at_least: int) -> int:
    """Enough shards that none exceeds MAX_SHARD_FRAMES (frame counts from the alignments)."""
    frames = sum(len(alignments[u]) for u in utts if u in alignments)
    return max(at_least, -(-frames // MAX_SHARD_FRAMES))


def write_egs(
    out: Path,
    train: tuple[Sequence[str], Callable[[str], np.ndarray], Mapping[str, np.ndarray]],
    num_pdfs: int,
    params: EgsParams,
    dev: tuple[Sequence[str], Callable[[str], np.ndarray], Mapping[str, np.ndarray]] | None = None,
    prior_floor: float = 1e-5,
) -> dict[str, Any]:
    """Write a complete egs dir atomically (train, optional dev, info.json, priors.npy)."""
    out = Path(out)
    num_shards = shards_needed(train[0], train[2], params.num_shards)
    if num_shards > params.num_shards:
        log.info(
            "using %d train shards (not %d) to keep each under %d frames",
            num_shards,
            params.num_shards,
            MAX_SHARD_FRAMES,
        )
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        st, counts, dim = write_split(
            tmp / "train",
            *train,
            num_pdfs=num_pdfs,
            params=params,
            num_shards=num_shards,
            desc="train egs",
        )
        if st.examples == 0:
            raise EgsError(
                "no training examples: every utterance was skipped (see the log); "
                "check that --feats and --ali belong to the same set"
            )
        check_skipped("train", st, "the alignments of --ali/--ali-dir")
        info: dict[str, Any] = {
            "model_type": params.model_type,
            "feat_dim": dim,
            "num_pdfs": num_pdfs,
            "context": params.context,
            "left_context": params.left_context,
            "chunk": params.chunk,
            "target_delay": params.target_delay,
            "seed": params.seed,
            "num_shards": num_shards,
            "frames_per_example": 1 if params.model_type == "dnn" else params.chunk,
            "splits": {},
            "skipped": {},
            "prior_floor": prior_floor,
        }
        skipped_lines: list[str] = []
        splits = [("train", st)]
        if dev is not None:
            splits.append(("dev", write_dev(tmp / "dev", dev, num_pdfs, params, dim)))
        for name, s in splits:
            info["splits"][name] = {"utts": s.utts, "frames": s.frames, "examples": s.examples}
            info["skipped"][name] = {r: len(u) for r, u in sorted(s.skipped.items())}
            skipped_lines += [
                f"{name} {u} {r}\n" for r, us in sorted(s.skipped.items()) for u in us
            ]
            nskip = sum(len(u) for u in s.skipped.values())
            if nskip:
                log.warning(
                    "%s: skipped %d utterances %s (listed in skipped.txt)",
                    name,
                    nskip,
                    info["skipped"][name],
                )
        info["frames"] = st.frames
        (tmp / "skipped.txt").write_text("".join(skipped_lines), encoding="utf-8")
        save_log_priors(tmp / EgsDir.PRIORS, log_priors_from_counts(counts, prior_floor))
        atomic_write_json(tmp / EgsDir.INFO, info)
        mark_done(tmp, {"frames": st.frames})
    return info


def write_dev(
    out: Path,
    dev: tuple[Sequence[str], Callable[[str], np.ndarray], Mapping[str, np.ndarray]],
    num_pdfs: int,
    params: EgsParams,
    dim: int,
) -> SplitStats:
    """The dev split (unshuffled, one shard as a rule), checked like train."""
    dst, _, ddim = write_split(
        out,
        *dev,
        num_pdfs=num_pdfs,
        params=params,
        num_shards=shards_needed(dev[0], dev[2], 1),
        shuffle=False,
        desc="dev egs",
    )
    if ddim not in (-1, dim):
        raise EgsError(f"dev feature dim {ddim} differs from train {dim}")
    check_skipped("dev", dst, "the dev alignments")
    return dst


def hold_out_dev(
    train: tuple[list[str], Callable[[str], np.ndarray], dict[str, np.ndarray]],
    ali_dir: Path,
    seed: int,
) -> tuple[
    tuple[list[str], Callable[[str], np.ndarray], dict[str, np.ndarray]],
    tuple[list[str], Callable[[str], np.ndarray], dict[str, np.ndarray]],
]:
    """Train minus a held-out subset, and that subset as dev (a Kaldi exp dir aligns one set)."""
    utts, feats, alis = train
    have = [u for u in utts if u in alis]
    n = min(HELD_OUT_UTTS, max(1, len(have) // 20))
    rng = np.random.default_rng([seed, 23])
    held = {have[i] for i in rng.permutation(len(have))[:n]}
    log.warning(
        "%s has no alignments of the dev utterances (a Kaldi exp dir usually aligns only the "
        "training set): holding out %d of %d training utterances as the dev split, as Kaldi's "
        "get_egs.sh does (pass --dev-ali to use the dev set's own alignments)",
        ali_dir,
        n,
        len(have),
    )
    rest = [u for u in utts if u not in held]
    dev_utts = [u for u in utts if u in held]
    return (rest, feats, alis), (dev_utts, feats, {u: alis[u] for u in dev_utts})


# ---------------------------------------------------------------------------------
def load_shards(split_dir: Path) -> list[dict[str, np.ndarray]]:
    """The shards of one split, in order, their arrays memory-mapped."""
    shards = []
    for d in sorted(split_dir.glob("shard-*"), key=lambda p: int(p.name.split("-")[1])):
        shards.append(
            {k: np.load(d / f"{k}.npy", mmap_mode="r") for k in ("feats", "targets", "examples")}
        )
    return shards


class EgsReader:
    """Minibatches of one worker's share of an egs dir (see the module docstring).

    Yields ``(x, y)``: DNN ``x`` float32 ``[B, (2c+1)*D]``, ``y`` int64 ``[B]``; LSTM ``x``
    ``[B, left+chunk, D]``, ``y`` ``[B, chunk]``. ``frames_per_epoch`` counts the labelled
    frames this worker reads per epoch; ``total_frames`` those of the whole split.
    """

    def __init__(
        self,
        egs_dir: Path | str,
        rank: int = 0,
        world_size: int = 1,
        batch_size: int = 256,
        seed: int = 0,
        split: str = "train",
    ) -> None:
        self.dir = Path(egs_dir)
        if not is_done(self.dir):
            raise EgsError(
                f"{self.dir} is not a finished egs dir (no .done): run steps_py.nnet.egs first"
            )
        if not 0 <= rank < world_size:
            raise EgsError(f"rank {rank} must be in [0, world_size={world_size})")
        if batch_size < 1:
            raise EgsError(f"batch_size must be >= 1, got {batch_size}")
        self.info = EgsDir(self.dir).info()
        sdir = self.dir / split
        if not sdir.is_dir():
            raise EgsError(
                f"{sdir} missing: this egs dir has no '{split}' split "
                "(pass --dev-feats/--dev-ali to steps_py.nnet.egs for dev)"
            )
        self.rank, self.world_size, self.batch_size, self.seed, self.split = (
            rank,
            world_size,
            batch_size,
            seed,
            split,
        )
        self.model_type = self.info["model_type"]
        self.frames_per_example = int(self.info["frames_per_example"])
        self.shards = load_shards(sdir)
        self.train = split == "train"
        sizes = [len(s["examples"]) for s in self.shards]
        if self.train:
            self._mb_per_shard = [n // batch_size for n in sizes]
        else:
            self._mb_per_shard = [-(-n // batch_size) for n in sizes]
        self.total_minibatches = sum(self._mb_per_shard)
        self.total_frames = sum(sizes) * self.frames_per_example
        if self.train:
            self.minibatches_per_epoch = self.total_minibatches // world_size
            if self.minibatches_per_epoch == 0:
                raise EgsError(
                    f"{self.dir}: {sum(sizes)} examples give no full minibatch of {batch_size} "
                    f"for each of {world_size} workers; lower the batch size"
                )
            self.frames_per_epoch = (
                self.minibatches_per_epoch * batch_size * self.frames_per_example
            )
        else:
            self.minibatches_per_epoch = len(range(rank, self.total_minibatches, world_size))
            self.frames_per_epoch = -1  # set below from the actual minibatch sizes
        c = int(self.info["context"])
        self._dnn_offsets = np.arange(-c, c + 1, dtype=np.int64)
        left, chunk, delay = (
            int(self.info["left_context"]),
            int(self.info["chunk"]),
            int(self.info["target_delay"]),
        )
        self._lstm_in = np.arange(left + chunk, dtype=np.int64) + (delay - left)
        self._lstm_lab = np.arange(chunk, dtype=np.int64)
        self.epoch = 0
        self.position = 0
        self._plan_epoch = -1
        self._plan: list[tuple[int, int]] = []
        self._perms: list[np.ndarray | None] = []
        if not self.train:
            self._make_plan()
            self.frames_per_epoch = (
                sum(len(self._indices(k, j)) for k, j in self._plan) * self.frames_per_example
            )

    def __len__(self) -> int:
        return self.minibatches_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Start `epoch` from its first minibatch, unless it is the epoch already in progress."""
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def state_dict(self) -> dict[str, int | str]:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "rank": self.rank,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "split": self.split,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key in ("world_size", "batch_size", "seed", "split"):
            if key in state and state[key] != getattr(self, key):
                raise EgsError(
                    f"cannot resume the data position: saved {key}={state[key]!r} but this reader has "
                    f"{getattr(self, key)!r}; resume with the same settings"
                )
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def _make_plan(self) -> None:
        if self._plan_epoch == self.epoch:
            return
        plan = [(k, j) for k, m in enumerate(self._mb_per_shard) for j in range(m)]
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch])
            plan = [plan[i] for i in rng.permutation(len(plan))]
            plan = plan[self.rank :: self.world_size][: self.minibatches_per_epoch]
            self._perms = [
                np.random.default_rng([self.seed, self.epoch, k]).permutation(len(s["examples"]))
                for k, s in enumerate(self.shards)
            ]
        else:
            plan = plan[self.rank :: self.world_size]
            self._perms = [None] * len(self.shards)
        self._plan, self._plan_epoch = plan, self.epoch

    def _indices(self, k: int, j: int) -> np.ndarray:
        n = len(self.shards[k]["examples"])
        lo, hi = j * self.batch_size, min((j + 1) * self.batch_size, n)
        perm = self._perms[k]
        return np.arange(lo, hi) if perm is None else perm[lo:hi]

    def minibatch(self, k: int, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather examples `idx` of shard `k` into (x, y)."""
        s = self.shards[k]
        ex = np.asarray(s["examples"][np.sort(idx)] if self.train else s["examples"][idx])
        row, lo, hi = ex[:, 0:1], ex[:, 1:2], ex[:, 2:3] - 1
        if self.model_type == "dnn":
            rows = np.clip(row + self._dnn_offsets, lo, hi)
            x = s["feats"][rows.reshape(-1)].reshape(len(ex), -1)
            y = s["targets"][row[:, 0]]
        else:
            rows = np.clip(row + self._lstm_in, lo, hi)
            x = s["feats"][rows.reshape(-1)].reshape(len(ex), rows.shape[1], -1)
            y = s["targets"][np.clip(row + self._lstm_lab, lo, hi)]
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(
            y.astype(np.int64)
        )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self._make_plan()
        while self.position < len(self._plan):
            k, j = self._plan[self.position]
            self.position += 1
            yield self.minibatch(k, self._indices(k, j))

    def minibatch_ids(self) -> list[tuple[int, int]]:
        """(shard, minibatch) ids this worker reads in the current epoch (for tests/diagnostics)."""
        self._make_plan()
        return list(self._plan)


# ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m steps_py.nnet.egs",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument(
        "--feats", type=Path, required=True, help="train data dir with fbank/ (e.g. data/train)"
    )
    ap.add_argument("--ali", type=Path, help="alignment dir with pdf.scp (e.g. exp/mono_ali/train)")
    ap.add_argument(
        "--ali-dir",
        type=Path,
        help="instead of --ali: a Kaldi exp dir with final.mdl and ali.*.gz or "
        "*.ali (e.g. exp/tri5a_ali); transition ids are mapped to pdfs with its final.mdl, which also "
        "gives the number of pdfs; dev alignments come from it too unless --dev-ali is given",
    )
    ap.add_argument("--model-type", choices=("dnn", "lstm"), required=True)
    add_output_options(
        ap, "output egs dir (e.g. exp/egs/dnn)", force_help="rewrite even if the egs dir is done"
    )
    ap.add_argument("--dev-feats", type=Path, help="dev data dir (validation examples)")
    ap.add_argument("--dev-ali", type=Path, help="dev alignment dir")
    ap.add_argument("--feat-kind", default="fbank", help="feature kind under the data dir")
    ap.add_argument("--num-pdfs", type=int, help="number of pdfs (default: <ali>/../num_pdfs)")
    ap.add_argument("--context", type=int, default=5, help="DNN: frames of context each side")
    ap.add_argument("--chunk", type=int, default=20, help="LSTM: labelled frames per chunk")
    ap.add_argument(
        "--left-context", type=int, default=20, help="LSTM: extra input frames before a chunk"
    )
    ap.add_argument(
        "--target-delay", type=int, default=5, help="LSTM: output at frame f predicts label f-delay"
    )
    ap.add_argument("--num-shards", type=int, default=4, help="train shards")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prior-floor", type=float, default=1e-5, help="floor of the pdf priors")
    return ap


@dataclass(frozen=True)
class EgsSources:
    """The data dirs the examples are made of; fields are named as the flags."""

    feats: Path
    feat_kind: str  # the features under a data dir
    ali: Path | None
    ali_dir: Path | None  # instead of --ali: a Kaldi exp dir
    dev_feats: Path | None
    dev_ali: Path | None


def _inputs(src: EgsSources) -> list[Path]:
    """What the examples are made of (their stamps go into .done; a change means a redo).
    Without --ali and --ali-dir there are no alignments to stamp (`run` then says so)."""
    ali = src.ali or src.ali_dir
    ins = [src.feats, src.feats / src.feat_kind, *([ali] if ali is not None else [])]
    if src.dev_feats is not None:
        ins += [src.dev_feats, src.dev_feats / src.feat_kind]
        if src.dev_ali is not None:
            ins.append(src.dev_ali)
    return ins


def run(args: argparse.Namespace) -> None:
    if (args.ali is None) == (args.ali_dir is None):
        raise EgsError(
            "give exactly one of --ali (project alignments) and --ali-dir (a Kaldi exp dir)"
        )
    if (args.dev_ali is not None and args.dev_feats is None) or (
        args.dev_feats is not None and args.dev_ali is None and args.ali_dir is None
    ):
        raise EgsError(
            "--dev-feats and --dev-ali go together: give both (validation examples) or "
            "neither (with --ali-dir, --dev-ali may be left out)"
        )
    params = EgsParams(
        args.model_type,
        args.context,
        args.chunk,
        args.left_context,
        args.target_delay,
        args.num_shards,
        args.seed,
    )
    from steps_py.features.io import FeatureReader  # the features reader

    kaldi: tuple[dict[str, np.ndarray], int] | None = None

    def load(
        data: Path, ali_dir: Path | None
    ) -> tuple[list[str], Callable[[str], np.ndarray], dict[str, np.ndarray]]:
        try:
            reader = FeatureReader(data, args.feat_kind, cmvn=True)
        except (
            FileNotFoundError,
            ValueError,
        ) as e:  # the reader's messages name the file and the fix
            raise EgsError(str(e)) from None
        if ali_dir is None:  # --ali-dir: Kaldi's alignments of this set
            assert kaldi is not None
            alis = {u: kaldi[0][u] for u in reader.utts if u in kaldi[0]}
            report_length_mismatch(list(reader.utts), reader.num_frames, alis, args.ali_dir)
        else:
            from steps_py.gmm.ali_io import AlignmentDir
            from steps_py.kaldi.int_vector_ark import AlignmentReadError

            try:
                alis = AlignmentMap(AlignmentDir(ali_dir).pdfs())
            except (FileNotFoundError, AlignmentReadError) as e:  # they name the scp and the fix
                raise EgsError(str(e)) from None
            alis.not_aligned = frozenset(AlignmentDir(ali_dir).not_aligned())
        log.info(
            "%s: %d utterances with features, %d alignments", data, len(reader.utts), len(alis)
        )
        return list(reader.utts), reader.__getitem__, alis

    if args.ali_dir is not None:
        kaldi = read_kaldi_pdf_alignments(args.ali_dir)
        if args.num_pdfs and args.num_pdfs != kaldi[1]:
            raise EgsError(
                f"--num-pdfs {args.num_pdfs} but {args.ali_dir}/final.mdl has {kaldi[1]} pdfs"
            )
    train = load(args.feats, args.ali)
    num_pdfs = kaldi[1] if kaldi is not None else args.num_pdfs or find_num_pdfs(args.ali, train[2])
    dev = load(args.dev_feats, args.dev_ali) if args.dev_feats else None
    if dev is not None and args.ali_dir is not None and args.dev_ali is None and not dev[2]:
        train, dev = hold_out_dev(train, args.ali_dir, args.seed)
    info = write_egs(args.out, train, num_pdfs, params, dev, args.prior_floor)
    log.info(
        "wrote %s: %s",
        args.out,
        json.dumps({k: info[k] for k in ("feat_dim", "num_pdfs", "frames", "splits", "skipped")}),
    )


def main(argv: list[str] | None = None) -> int:
    return step_main(
        "nnet.egs",
        build_parser(),
        run,
        argv,
        log_file=lambda a: a.out.parent / "log" / f"egs_{a.out.name}.log",
        done_dir=lambda a: a.out,
        inputs=lambda a: _inputs(dataclass_from_args(EgsSources, a)),
    )


if __name__ == "__main__":
    raise SystemExit(main())
