"""Synthesis speed of the synthetic corpus, in seconds of audio per CPU-second (one core).

Measures, on one process: espeak-ng alone (22.05 kHz samples), the whole per-utterance
pipeline in-process (espeak + channel + 16 kHz resampling + wav write), and the same
pipeline as the generator runs it (one fork per batch of utterances, children's CPU counted).

    PYTHONPATH=. python benchmarks/bench_synth.py --utts 200
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from local.synth.config import load_config
from local.synth.generate import BATCH
from local.synth.speakers import draw_speakers
from local.synth.templates import SentenceGenerator
from local.synth.worker import UttTask, init_worker, render_utterance, synthesize_batch
from steps_py.log import setup_logging


def cpu_seconds() -> float:
    """User+system CPU of this process and of its waited-for children."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--utts", type=int, default=200, help="utterances per measurement (default: %(default)s)"
    )
    p.add_argument("--config", type=Path, default=Path("egs/synth/conf/corpus.json"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    log = setup_logging("bench_synth")
    cfg = load_config(args.config if args.config.exists() else None)
    gen = SentenceGenerator(**cfg["lexicon"])
    rng = np.random.default_rng(args.seed)
    texts = [gen.generate(rng)[0] for _ in range(args.utts)]
    speakers = draw_speakers("train", 40, args.seed, cfg["speakers"])
    babble = [
        (texts[i], speakers[i]) for i in range(min(len(texts), int(cfg["channel"]["babble_bank"])))
    ]
    init_worker(babble, cfg["channel"])
    from local.synth.worker import _STATE

    engine = _STATE["engine"]
    c0, audio = cpu_seconds(), 0.0
    for i, t in enumerate(texts):
        spk = speakers[i % len(speakers)]
        syn = engine.synth(t, spk.voice, spk.rate, spk.pitch, spk.pitch_range, rand_seed=i + 1)
        audio += len(syn.samples) / syn.sample_rate
    c_esp = cpu_seconds() - c0
    log.info(
        "espeak only:        %7.1f s audio in %6.2f CPU s = %6.0f s audio / CPU s",
        audio,
        c_esp,
        audio / c_esp,
    )

    with tempfile.TemporaryDirectory() as tmp:
        tasks = [
            UttTask(
                f"u{i:05d}",
                "train",
                i,
                t,
                "",
                speakers[i % len(speakers)],
                args.seed,
                str(Path(tmp) / f"u{i:05d}.wav"),
            )
            for i, t in enumerate(texts)
        ]
        sr = cfg["channel"]["sample_rate"]
        batches = [tasks[i : i + BATCH] for i in range(0, len(tasks), BATCH)]
        runs = (
            ("pipeline in-process", lambda: [render_utterance(t) for t in tasks]),
            ("pipeline as run", lambda: [r for b in batches for r in synthesize_batch(b)]),
        )
        for name, fn in runs:
            c0, w0 = cpu_seconds(), time.time()
            audio = sum(r["num_samples"] for r in fn()) / sr
            c = cpu_seconds() - c0
            log.info(
                "%-19s %7.1f s audio in %6.2f CPU s = %6.0f s audio / CPU s (wall %.2f s)",
                name + ":",
                audio,
                c,
                audio / c,
                time.time() - w0,
            )


if __name__ == "__main__":
    main()
