"""Score a hypothesis text against a reference text by CER (Kaldi-style output).

    python -m steps_py.score --ref data/dev/text --hyp exp/mono/decode_dev/hyp.txt \\
        [--utt2spk data/dev/utt2spk] [--out-dir exp/mono/decode_dev/scoring]

Prints the Kaldi line `%CER x.xx [ e / n, i ins, d del, s sub ]` to stdout. With --out-dir
writes `cer` (that line), `per_utt` (ref/hyp/op lines with C/S/I/D, `***` for gaps),
`per_spk` (per-speaker table), `missing.txt` (reference utterances absent from the
hypothesis, scored as all deletions) and `cer.json`. The speaker of an utterance comes
from --utt2spk, else it is the utterance id's prefix before the first '-' or '_'.
Normalisation rules: see `steps_py.score.normalize`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from steps_py.cli import StepError, step_main
from steps_py.data.kaldi_dir import DataDirError, read_kaldi_map
from steps_py.fileio import atomic_write_json, atomic_write_text
from steps_py.score.cer import (
    ScoreError,
    format_per_speaker,
    format_per_utt,
    per_speaker,
    score_files,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m steps_py.score",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--ref", type=Path, required=True, help="reference Kaldi text (<utt> <transcript>)"
    )
    p.add_argument("--hyp", type=Path, required=True, help="hypothesis Kaldi text")
    p.add_argument("--utt2spk", type=Path, default=None, help="utt2spk for the per-speaker table")
    p.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="write cer, per_utt, per_spk, missing.txt, cer.json here",
    )
    p.add_argument(
        "--encoding",
        default="utf-8",
        help="encoding of --hyp (default %(default)s; e.g. gb18030, utf-16: another system's "
        "output). A UTF-8 byte-order mark is removed either way",
    )
    p.add_argument(
        "--ref-encoding",
        default="utf-8",
        help="encoding of --ref (default %(default)s: a data dir's text, which steps_py.data.prepare writes "
        "in UTF-8 whatever the corpus's encoding)",
    )
    p.add_argument(
        "--skip-empty-ref",
        action="store_true",
        help="leave out (and report) reference utterances that are empty after "
        "normalisation instead of failing",
    )
    return p


class ScoreInputError(StepError):
    """Scoring inputs that cannot be read; the message names the file and the fix."""


def run(args: argparse.Namespace) -> int:
    log = logging.getLogger("score")
    try:
        res = score_files(
            args.ref,
            args.hyp,
            empty_ref="skip" if args.skip_empty_ref else "error",
            encoding=args.encoding,
            ref_encoding=args.ref_encoding,
        )
        utt2spk = read_kaldi_map(args.utt2spk) if args.utt2spk else None
    except (ScoreError, DataDirError) as e:
        raise ScoreInputError(str(e)) from None
    except UnicodeDecodeError as e:
        raise ScoreInputError(
            f"{args.utt2spk}: not UTF-8 ({e.reason} at byte {e.start}); convert it with iconv"
        ) from None
    if res.missing:
        log.warning(
            "%d reference utterance(s) missing from %s, scored as deletions: %s",
            len(res.missing),
            args.hyp,
            " ".join(res.missing[:10]) + (" ..." if len(res.missing) > 10 else ""),
        )
    if res.skipped_empty_ref:
        log.warning(
            "%d empty reference utterance(s) skipped: %s",
            len(res.skipped_empty_ref),
            " ".join(res.skipped_empty_ref[:10]),
        )
    print(res.line())
    if args.out_dir:
        d = args.out_dir
        atomic_write_text(d / "cer", res.line() + "\n")
        atomic_write_text(d / "per_utt", format_per_utt(res))
        atomic_write_text(d / "per_spk", format_per_speaker(per_speaker(res, utt2spk)))
        atomic_write_text(d / "missing.txt", "".join(u + "\n" for u in res.missing))
        atomic_write_json(d / "cer.json", res.to_dict())
        log.info("wrote cer, per_utt, per_spk, missing.txt, cer.json to %s", d)
    return 0


def main(argv: list[str] | None = None) -> int:
    return step_main("score", build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
