"""The Mandarin digits corpus as Kaldi data dirs: a speaker-disjoint train/dev/test split.

    python -m local.digits.prepare --corpus-dir ../shared/corpora/mandarin_digits --out data/local/digits

The corpus (``../shared/corpora/mandarin_digits``, its README) is one pool of 2,239
utterances of 7 speakers, ``wav.scp`` with paths relative to the corpus dir and ``text`` of
space-separated digit characters; the speaker is inside the utterance id
(``astmic-fsi003-sen_0012`` -> ``fsi003``). The split is by speaker and deterministic: the
sorted speakers, the last ``--test-speakers`` of them test, the ones before dev, the rest train
(or, with ``--test-speaker S``, one leave-one-speaker-out fold: S test, the next speaker dev)
(default 5/1/1: train fsi001-fsi005, dev fsi006, test fsi007). Writes
``<out>/{train,dev,test}/{wav.scp,text,utt2spk,spk2utt}`` with the corpus's utterance ids,
absolute wav paths, ``<out>/split.json`` (speakers and counts per set) and ``.done``; the data step
(``steps_py.data.prepare --kaldi-dirs <out>``) checks them like any Kaldi data dirs.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections import defaultdict
from pathlib import Path

from steps_py.cli import StepError, step_main
from steps_py.data.kaldi_dir import write_kaldi_map
from steps_py.fileio import atomic_path, mark_done

log = logging.getLogger("digits.prepare")
SETS = ("train", "dev", "test")
SPEAKER_RE = re.compile(r"^[^-]+-(?P<spk>[^-]+)-")


class DigitsError(StepError):
    """The corpus dir is not the digits layout; the message says what is missing."""


def speaker_of(utt: str) -> str:
    """`astmic-fsi001-sen_0000` -> `fsi001` (the second dash-separated field)."""
    m = SPEAKER_RE.match(utt)
    if not m:
        raise DigitsError(
            f"utterance id {utt!r} has no speaker field (expected <mic>-<speaker>-<sentence>)"
        )
    return m.group("spk")


def read_table(path: Path) -> dict[str, str]:
    """A Kaldi `<key> <value...>` file as {key: value}; a repeated key is an error."""
    if not path.is_file():
        raise DigitsError(f"{path} is missing: point --corpus-dir at the mandarin_digits corpus")
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.strip().split(maxsplit=1)
        if not parts:
            continue
        if parts[0] in out:
            raise DigitsError(f"{path}:{n}: utterance {parts[0]} is given twice")
        out[parts[0]] = parts[1] if len(parts) > 1 else ""
    return out


def split_speakers(speakers: list[str], dev: int, test: int) -> dict[str, list[str]]:
    """Sorted speakers: the last `test` are test, the `dev` before them dev, the rest train."""
    spk = sorted(set(speakers))
    if dev < 1 or test < 1 or len(spk) < dev + test + 1:
        raise DigitsError(
            f"{len(spk)} speakers cannot be split into train, {dev} dev and {test} test speakers"
        )
    n_train = len(spk) - dev - test
    return {
        "train": spk[:n_train],
        "dev": spk[n_train : n_train + dev],
        "test": spk[n_train + dev :],
    }


def leave_one_out(speakers: list[str], test: str) -> dict[str, list[str]]:
    """Leave-one-speaker-out: `test` is test, the next speaker (sorted, cyclically) dev, the
    rest train; over every speaker as `test`, each utterance is in test exactly once."""
    spk = sorted(set(speakers))
    if test not in spk:
        raise DigitsError(f"--test-speaker {test!r} is not one of the corpus's speakers {spk}")
    if len(spk) < 3:
        raise DigitsError(f"{len(spk)} speakers cannot be split into train, dev and test")
    dev = spk[(spk.index(test) + 1) % len(spk)]
    return {"train": [s for s in spk if s not in (test, dev)], "dev": [dev], "test": [test]}


def prepare(
    corpus: Path, out: Path, dev_speakers: int = 1, test_speakers: int = 1, test_speaker: str = ""
) -> dict:
    """Write the three data dirs under `out`; return the split (speakers, utterance counts)."""
    corpus = corpus.resolve()
    wavs, text = read_table(corpus / "wav.scp"), read_table(corpus / "text")
    if set(wavs) != set(text):
        raise DigitsError(
            f"{corpus}: wav.scp and text differ in {len(set(wavs) ^ set(text))} utterance ids"
        )
    utt2spk = {u: speaker_of(u) for u in wavs}
    split = (
        leave_one_out(list(utt2spk.values()), test_speaker)
        if test_speaker
        else split_speakers(list(utt2spk.values()), dev_speakers, test_speakers)
    )
    info: dict = {"corpus": str(corpus), "sets": {}}
    for name in SETS:
        spks = set(split[name])
        utts = sorted(u for u in wavs if utt2spk[u] in spks)
        d = out / name
        with atomic_path(d) as tmp:
            tmp.mkdir(parents=True)
            paths = {}
            for u in utts:
                p = Path(wavs[u])
                paths[u] = str(p if p.is_absolute() else corpus / p)
            write_kaldi_map(tmp / "wav.scp", paths)
            write_kaldi_map(tmp / "text", {u: text[u] for u in utts})
            write_kaldi_map(tmp / "utt2spk", {u: utt2spk[u] for u in utts})
            spk2utt: dict[str, list[str]] = defaultdict(list)
            for u in utts:
                spk2utt[utt2spk[u]].append(u)
            write_kaldi_map(tmp / "spk2utt", {s: " ".join(v) for s, v in spk2utt.items()})
        info["sets"][name] = {"speakers": split[name], "utterances": len(utts)}
        log.info("%s: %d utterances of speakers %s", name, len(utts), " ".join(split[name]))
    (out / "split.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return info


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m local.digits.prepare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--corpus-dir",
        type=Path,
        required=True,
        help="the mandarin_digits corpus (wav.scp, text, wav/)",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="where the Kaldi data dirs go (e.g. data/local/digits)",
    )
    p.add_argument("--dev-speakers", type=int, default=1, help="speakers in dev (default 1)")
    p.add_argument("--test-speakers", type=int, default=1, help="speakers in test (default 1)")
    p.add_argument(
        "--test-speaker",
        default="",
        help="leave-one-speaker-out fold: this speaker is test, the next one (sorted, "
        "cyclically) dev, the rest train (overrides --dev/--test-speakers; default off)",
    )
    p.add_argument("--force", action="store_true", help="rewrite even if --out is done")
    return p


def run(args: argparse.Namespace) -> int:
    info = prepare(
        args.corpus_dir, args.out, args.dev_speakers, args.test_speakers, args.test_speaker
    )
    mark_done(args.out, info)
    return 0


def main(argv: list[str] | None = None) -> int:
    return step_main(
        "digits.prepare",
        build_parser(),
        run,
        argv,
        done_dir=lambda a: a.out,
        done_state="already split",
    )


if __name__ == "__main__":
    raise SystemExit(main())
