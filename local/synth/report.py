"""Corpus report: hours, utterances, speakers and characters per split, SNR histogram."""

from __future__ import annotations

from collections import Counter
from typing import Any

SNR_EDGES = (0.0, 2.5, 5.0, 7.5, 10.0, 12.5, 15.0, 17.5, 20.0, 25.0, 30.0)


def snr_histogram(snrs: list[float]) -> list[dict[str, Any]]:
    bins = []
    for lo, hi in zip(SNR_EDGES[:-1], SNR_EDGES[1:], strict=True):
        last = hi == SNR_EDGES[-1]
        n = sum(1 for s in snrs if lo <= s < hi or (last and s == hi))
        bins.append({"low_db": lo, "high_db": hi, "count": n})
    return bins


def _bar(n: int, peak: int, width: int = 40) -> str:
    return "#" * (round(width * n / peak) if peak else 0)


def build_report(results: dict[str, dict[str, Any]], lm_text: list[str]) -> dict[str, Any]:
    """`results[split]` holds `recordings`, `supervisions`, `speakers`, `skipped`; returns json + text."""
    splits: dict[str, Any] = {}
    all_snr: list[float] = []
    noise: Counter[str] = Counter()
    reverb = 0
    chars_by_split: dict[str, set[str]] = {}
    for split, res in results.items():
        sups = res["supervisions"]
        chars = set("".join(s.text for s in sups))
        chars_by_split[split] = chars
        hours = sum(s.duration for s in sups) / 3600
        splits[split] = {
            "hours": round(hours, 4),
            "utterances": len(sups),
            "speakers": len({s.speaker for s in sups}),
            "distinct_characters": len(chars),
            "characters": sum(len(s.text) for s in sups),
            "mean_duration_s": round(hours * 3600 / max(len(sups), 1), 3),
            "skipped": len(res["skipped"]),
        }
        for s in sups:
            all_snr.append(float(s.custom["snr_db"]))
            noise[s.custom["noise_type"]] += 1
            reverb += s.custom["rt60_s"] > 0
    spoken = set().union(*chars_by_split.values()) if chars_by_split else set()
    lm_chars = set("".join(lm_text))
    seen = chars_by_split.get("train", set()) | lm_chars
    n_utts = sum(v["utterances"] for v in splits.values())
    js = {
        "splits": splits,
        "total": {
            "hours": round(sum(v["hours"] for v in splits.values()), 4),
            "utterances": n_utts,
            "speakers": sum(v["speakers"] for v in splits.values()),
            "distinct_characters": len(spoken),
        },
        "lm_text": {"sentences": len(lm_text), "distinct_characters": len(lm_chars)},
        "unseen_characters": {
            s: len(chars_by_split[s] - seen) for s in chars_by_split if s != "train"
        },
        "noise_types": dict(sorted(noise.items())),
        "reverberant_fraction": round(reverb / max(n_utts, 1), 3),
        "snr_histogram": snr_histogram(all_snr),
        "snr_mean_db": round(sum(all_snr) / max(len(all_snr), 1), 2),
    }
    lines = ["Synthetic Mandarin voice-search corpus", ""]
    lines.append(
        f"{'split':<6} {'hours':>7} {'utts':>6} {'spk':>4} {'chars':>6} {'uniq':>5} {'mean_s':>6} {'skip':>4}"
    )
    for split, v in splits.items():
        lines.append(
            f"{split:<6} {v['hours']:7.3f} {v['utterances']:6d} {v['speakers']:4d} {v['characters']:6d} "
            f"{v['distinct_characters']:5d} {v['mean_duration_s']:6.2f} {v['skipped']:4d}"
        )
    t = js["total"]
    lines.append(
        f"{'total':<6} {t['hours']:7.3f} {t['utterances']:6d} {t['speakers']:4d} {'':>6} {t['distinct_characters']:5d}"
    )
    lines.append("")
    lines.append(
        f"LM text: {len(lm_text)} sentences, {len(lm_chars)} distinct characters, none spoken in the audio"
    )
    unseen = ", ".join(f"{k} {v}" for k, v in js["unseen_characters"].items())
    lines.append(f"characters not in train text or LM text: {unseen}")
    lines.append(
        "noise types: "
        + ", ".join(f"{k} {v}" for k, v in js["noise_types"].items())
        + f"; reverberant {js['reverberant_fraction']:.0%}"
    )
    lines.append(f"SNR histogram (mean {js['snr_mean_db']} dB):")
    peak = max((b["count"] for b in js["snr_histogram"]), default=0)
    for b in js["snr_histogram"]:
        lines.append(
            f"  {b['low_db']:4.1f}-{b['high_db']:4.1f} dB {b['count']:6d} {_bar(b['count'], peak)}"
        )
    return {"json": js, "text": "\n".join(lines) + "\n"}
