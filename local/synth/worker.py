"""Worker side of corpus generation: speak one utterance, apply the channel, write the wav.

espeak-ng keeps hidden state between sentences (e.g. a function-static pitch-flutter
index and wave-generator buffers that neither ``espeak_Initialize`` nor
``espeak_ng_SetRandSeed`` resets), so the samples of a sentence depend on what the
process spoke before.  To make every utterance a pure function of its task, each worker
is a "zygote": it initializes espeak and builds its babble bank once, then forks a child
per fixed batch of utterances; the child starts from that identical state, does the work
and reports back through a pipe.  This module imports only numpy/scipy/soundfile so spawned workers start fast.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from local.synth.channel import apply_channel, resample, to_int16
from local.synth.espeak import Espeak
from local.synth.speakers import SPLIT_CODES, Speaker

UTT_PURPOSE = 3  # mixed into per-utterance seeds


@dataclass(frozen=True)
class UttTask:
    utt_id: str
    split: str
    index: int
    text: str
    category: str
    speaker: Speaker
    seed: int
    wav_path: str  # where the worker writes the file


_STATE: dict[str, Any] = {}


def init_worker(babble: list[tuple[str, Speaker]], channel_cfg: dict[str, Any]) -> None:
    """Per-process set-up: the espeak engine and the bank of babble clips (unit RMS).

    A failure is remembered and reported for every task (a pool initializer that raises
    would make multiprocessing respawn workers forever).
    """
    try:
        _init(babble, channel_cfg)
    except Exception as e:
        _STATE["init_error"] = f"worker set-up failed: {type(e).__name__}: {e}"


def _init(babble: list[tuple[str, Speaker]], channel_cfg: dict[str, Any]) -> None:
    engine = Espeak.get()
    bank = []
    for i, (text, spk) in enumerate(babble):
        syn = engine.synth(text, spk.voice, spk.rate, spk.pitch, spk.pitch_range, rand_seed=i + 1)
        x = resample(
            syn.samples.astype(np.float64) / 32768.0, syn.sample_rate, channel_cfg["sample_rate"]
        )
        rms = np.sqrt(np.mean(x**2)) if len(x) else 0.0
        if rms > 0:
            bank.append(x / rms)
    _STATE.update(engine=engine, bank=bank, channel=channel_cfg)


def render_utterance(task: UttTask) -> dict[str, Any]:
    """Speak, add the channel, write the wav (in this process); returns the metadata."""
    engine: Espeak = _STATE["engine"]
    cfg = _STATE["channel"]
    spk = task.speaker
    seed = int(
        np.random.default_rng(
            [task.seed, SPLIT_CODES[task.split], UTT_PURPOSE + 1, task.index]
        ).integers(1, 2**31)
    )
    syn = engine.synth(task.text, spk.voice, spk.rate, spk.pitch, spk.pitch_range, rand_seed=seed)
    if len(syn.samples) < 0.1 * syn.sample_rate:
        return {"utt_id": task.utt_id, "error": f"espeak produced only {len(syn.samples)} samples"}
    rng = np.random.default_rng([task.seed, SPLIT_CODES[task.split], UTT_PURPOSE, task.index])
    res = apply_channel(syn.samples, syn.sample_rate, cfg, rng, _STATE["bank"])
    pcm = to_int16(res.audio)
    Path(task.wav_path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(task.wav_path, pcm, cfg["sample_rate"], subtype="PCM_16", format="WAV")
    phones = [
        [p, round(t + res.lead_s, 3)]
        for p, t in syn.phone_times
        if p and not p.startswith(("_", "("))
    ]
    return {"utt_id": task.utt_id, "num_samples": len(pcm), "info": res.info, "phone_times": phones}


def _in_child(fn: Callable[[], Any], fallback: Callable[[str], Any]) -> Any:
    """Run `fn` in a forked child (which starts from this process's espeak state) and return
    its JSON-able result; `fallback(reason)` if the child dies without answering."""
    if not hasattr(
        os, "fork"
    ):  # pragma: no cover - non-POSIX: correct audio, order-dependent bytes
        return fn()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(r)
            with os.fdopen(w, "wb") as f:
                f.write(json.dumps(fn()).encode("utf-8"))
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    return json.loads(data) if data else fallback(f"worker child died (wait status {status})")


def _render_safe(task: UttTask) -> dict[str, Any]:
    if "init_error" in _STATE:
        return {"utt_id": task.utt_id, "error": _STATE["init_error"]}
    try:
        return render_utterance(task)
    except Exception as e:  # reported to the parent, which counts the item as skipped
        return {"utt_id": task.utt_id, "error": f"{type(e).__name__}: {e}"}


def synthesize_utterance(task: UttTask) -> dict[str, Any]:
    """`render_utterance` in a forked child, so that espeak starts from the zygote state."""
    return _in_child(lambda: _render_safe(task), lambda why: {"utt_id": task.utt_id, "error": why})


def synthesize_batch(tasks: list[UttTask]) -> list[dict[str, Any]]:
    """Render a fixed batch of utterances in order in one forked child.

    Batches are fixed slices of the utterance indices (see `generate`), so what espeak
    spoke before an utterance depends only on the plan, never on `nj` or scheduling,
    while the fork cost is shared by the whole batch.
    """
    return _in_child(
        lambda: [_render_safe(t) for t in tasks],
        lambda why: [{"utt_id": t.utt_id, "error": why} for t in tasks],
    )
