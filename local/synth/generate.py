"""Build the synthetic corpus: plan sentences and speakers, synthesize in parallel, write
wavs, lhotse manifests, the LM text and the report.

Determinism: every random choice comes from a generator seeded by (seed, split, purpose,
utterance index), sentences are planned in the parent process in a fixed order, and
worker results are consumed in index order, so `--nj` never changes the output.
"""

from __future__ import annotations

import gzip
import json
import logging
import multiprocessing as mp
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from lhotse import AudioSource, Recording, SupervisionSegment

from local.synth.config import SPLITS, config_hash
from local.synth.espeak import Espeak
from local.synth.report import build_report
from local.synth.speakers import SPLIT_CODES, Speaker, draw_speakers
from local.synth.templates import SentenceGenerator
from local.synth.worker import UttTask, init_worker, synthesize_batch
from steps_py.cli import progress
from steps_py.fileio import atomic_path, atomic_write_json, atomic_write_text, is_done, mark_done

log = logging.getLogger("corpus.synth")

# purposes mixed into the seeds
_TEXT, _LM = 1, 8
# utterances [k*BATCH, (k+1)*BATCH) of a split are rendered in order by one forked child
BATCH = 8


@contextmanager
def worker_pool(
    nj: int, babble: list[tuple[str, Speaker]], channel_cfg: dict[str, Any]
) -> Iterator[Callable[[list[UttTask]], list[dict[str, Any]]]]:
    """A `map` over utterances on `nj` worker processes (results in task order)."""
    # spawn: workers are small (no jieba pools, no lhotse), so their per-utterance fork is cheap
    ctx = mp.get_context("spawn")
    with ctx.Pool(max(nj, 1), initializer=init_worker, initargs=(babble, channel_cfg)) as pool:

        def run(tasks: list[UttTask]) -> list[dict[str, Any]]:
            batches = [tasks[i : i + BATCH] for i in range(0, len(tasks), BATCH)]
            return [r for batch in pool.imap(synthesize_batch, batches) for r in batch]

        yield run


# ---------------------------------------------------------------- parent side


def _write_jsonl_gz(path: Path, items: Iterable[dict[str, Any]]) -> None:
    """gzip with mtime 0 so that identical manifests are identical bytes (lhotse reads it)."""
    with (
        atomic_path(path) as tmp,
        open(tmp, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
    ):
        for item in items:
            gz.write((json.dumps(item, ensure_ascii=False) + "\n").encode("utf-8"))


def _split_sentences(
    gen: SentenceGenerator, split: str, seed: int, cfg: dict[str, Any]
) -> Iterator[tuple[str, str]]:
    rng = np.random.default_rng([seed, SPLIT_CODES[split], _TEXT])
    max_chars = int(cfg["max_utterance_chars"])
    for text, cat in gen.stream(rng, bucket=split, fractions=cfg["text_buckets"]):
        if len(text) <= max_chars:
            yield text, cat


def synthesize_split(
    split: str,
    cfg: dict[str, Any],
    seed: int,
    gen: SentenceGenerator,
    run_map: Callable[[list[UttTask]], list[dict[str, Any]]],
    tmp_dir: Path,
    final_dir: Path,
    nj: int,
) -> dict[str, Any]:
    """Synthesize utterances of `split` in index order until its hours are reached.

    Work is planned in chunks sized from the remaining duration (so little is synthesized
    past the target); what lies past the target is discarded, so the kept utterances
    do not depend on the chunk size or `nj`.
    """
    scfg = cfg["splits"][split]
    target_s = float(scfg["hours"]) * 3600
    speakers = draw_speakers(split, int(scfg["speakers"]), seed, cfg["speakers"])
    sentences = _split_sentences(gen, split, seed, cfg)
    sr = int(cfg["channel"]["sample_rate"])
    recordings, supervisions, skipped = [], [], []
    total_s, index = 0.0, 0
    max_index = int(target_s / 0.3) + 1000
    bar = progress(total=round(target_s), unit="s", desc=f"synth {split}", leave=False)
    while total_s < target_s:
        if index > max_index:
            raise RuntimeError(
                f"{split}: {index} utterances gave only {total_s:.0f} s; is espeak producing audio?"
            )
        chunk = int(np.clip(np.ceil((target_s - total_s) / 2.5) + 1, 2 * nj, 64 * nj))
        chunk = (
            -(-chunk // BATCH) * BATCH
        )  # whole batches, so batch k is always the same utterances
        tasks = []
        for i in range(index, index + chunk):
            text, cat = next(sentences)
            spk = speakers[i % len(speakers)]
            utt = f"{spk.id}-{i:05d}"
            tasks.append(
                UttTask(
                    utt,
                    split,
                    i,
                    text,
                    cat,
                    spk,
                    seed,
                    str(tmp_dir / "wav" / spk.id / f"{utt}.wav"),
                )
            )
        index += chunk
        for task, res in zip(tasks, run_map(tasks), strict=True):
            if total_s >= target_s:  # planned beyond the target: drop
                Path(task.wav_path).unlink(missing_ok=True)
                continue
            if "error" in res:
                skipped.append(f"{task.utt_id} {res['error']}")
                continue
            n = res["num_samples"]
            dur = n / sr
            total_s += dur
            bar.update(round(dur))
            src = str(final_dir / "wav" / task.speaker.id / f"{task.utt_id}.wav")
            recordings.append(
                Recording(
                    id=task.utt_id,
                    sources=[AudioSource("file", [0], src)],
                    sampling_rate=sr,
                    num_samples=n,
                    duration=dur,
                )
            )
            custom = {
                **res["info"],
                "category": task.category,
                "voice": task.speaker.voice,
                "pitch": task.speaker.pitch,
                "pitch_range": task.speaker.pitch_range,
                "rate": task.speaker.rate,
                "phone_times": res["phone_times"],
            }
            supervisions.append(
                SupervisionSegment(
                    id=task.utt_id,
                    recording_id=task.utt_id,
                    start=0.0,
                    duration=dur,
                    channel=0,
                    text=task.text,
                    language="Chinese",
                    speaker=task.speaker.id,
                    gender=task.speaker.gender,
                    custom=custom,
                )
            )
        attempted = len(recordings) + len(skipped)
        if attempted >= 16 and len(skipped) > 0.05 * attempted:
            raise RuntimeError(
                f"{split}: {len(skipped)} of {attempted} utterances failed, e.g. {skipped[:2]}"
            )
    bar.close()
    if skipped and len(skipped) > 0.05 * (len(recordings) + len(skipped)):
        raise RuntimeError(f"{split}: {len(skipped)} utterances failed, e.g. {skipped[:3]}")
    for line in skipped:
        log.warning("skipped %s", line)
    return {
        "recordings": recordings,
        "supervisions": supervisions,
        "speakers": speakers,
        "skipped": skipped,
    }


def lm_sentences(
    gen: SentenceGenerator, cfg: dict[str, Any], seed: int, exclude: set[str]
) -> list[str]:
    """LM text from the LM share of the sentence space; never a spoken sentence."""
    rng = np.random.default_rng([seed, _LM, _TEXT])
    out = []
    stream = gen.stream(rng, bucket="lm", fractions=cfg["text_buckets"], exclude=exclude)
    for text, _ in stream:
        out.append(text)
        if len(out) >= int(cfg["lm_sentences"]):
            break
    return out


def generate_corpus(
    out_dir: Path, cfg: dict[str, Any], seed: int = 0, nj: int = 1, force: bool = False
) -> dict[str, Any]:
    """Generate the corpus into `out_dir` (skipped if done with the same config); returns the report."""
    out_dir = Path(out_dir)
    chash = config_hash(cfg, seed)
    if is_done(out_dir) and not force:
        done = json.loads((out_dir / ".done").read_text(encoding="utf-8") or "{}")
        if done.get("config_hash") == chash:
            log.info(
                "%s is complete for this config and seed (hash %s): skipping; use --force to redo",
                out_dir,
                chash,
            )
            return json.loads((out_dir / "report.json").read_text(encoding="utf-8"))
        log.info(
            "%s was made with another config or seed (%s != %s): regenerating",
            out_dir,
            done.get("config_hash"),
            chash,
        )
    t0, c0 = time.time(), time.process_time()
    Espeak.get()  # fail early, with a clear message, if libespeak-ng cannot be loaded
    nj = max(1, int(nj))
    gen = SentenceGenerator(**cfg["lexicon"])
    n_bank = int(cfg["channel"]["babble_bank"])
    bank_spk = draw_speakers("babble", n_bank, seed, cfg["speakers"])
    bank_rng = np.random.default_rng([seed, SPLIT_CODES["babble"], _TEXT])
    bank_text = gen.stream(bank_rng, bucket="lm", fractions=cfg["text_buckets"])
    babble = [(next(bank_text)[0], spk) for spk in bank_spk]
    final_dir = out_dir.resolve()
    results: dict[str, dict[str, Any]] = {}
    with atomic_path(out_dir) as tmp, worker_pool(nj, babble, cfg["channel"]) as run_map:
        tmp.mkdir(parents=True)
        for split in SPLITS:
            res = synthesize_split(split, cfg, seed, gen, run_map, tmp, final_dir, nj)
            results[split] = res
            _write_jsonl_gz(
                tmp / "manifests" / f"recordings_{split}.jsonl.gz",
                (r.to_dict() for r in res["recordings"]),
            )
            _write_jsonl_gz(
                tmp / "manifests" / f"supervisions_{split}.jsonl.gz",
                (s.to_dict() for s in res["supervisions"]),
            )
            log.info(
                "%s: %d utterances, %.3f h, %d speakers",
                split,
                len(res["recordings"]),
                sum(r.duration for r in res["recordings"]) / 3600,
                len(res["speakers"]),
            )
        spoken = {s.text for r in results.values() for s in r["supervisions"]}
        lm = lm_sentences(gen, cfg, seed, spoken)
        assert not spoken.intersection(lm)
        atomic_write_text(tmp / "lm_text.txt", "".join(t + "\n" for t in lm))
        report = build_report(results, lm)
        atomic_write_json(tmp / "report.json", report["json"])
        atomic_write_text(tmp / "report.txt", report["text"])
        atomic_write_json(tmp / "config.json", {"seed": seed, "config": cfg})
    wall, cpu = time.time() - t0, time.process_time() - c0
    audio_s = report["json"]["total"]["hours"] * 3600
    log.info(
        "generated %.0f s of audio in %.1f s wall (nj=%d, %.0fx real time; parent CPU %.1f s)",
        audio_s,
        wall,
        nj,
        audio_s / max(wall, 1e-9),
        cpu,
    )
    mark_done(out_dir, {"config_hash": chash, "seed": seed})
    return report["json"]
