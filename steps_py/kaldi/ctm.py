"""Word time marks (CTM) of a transcript or a decode, by forced alignment with a GMM.

    python -m steps_py.kaldi.ctm --data data/test --lang data/lang --model exp/mono \\
        --text exp/mono/decode_test/hyp.txt --out exp/mono/decode_test/ctm

Kaldi's ``steps/get_train_ctm.sh`` route: each utterance's word sequence (``--text``:
a decode dir's ``hyp.txt``, default the data dir's ``text``) is aligned with the GMM
(``steps_py.gmm.align``, Kaldi's beams), the transition ids are split into phones
(SplitToPhones) and the phones into words with ``<lang>/phones/align_lexicon.int``
(lattice-align-words-lexicon). Output lines are ``<utt> 1 <start> <dur> <word>`` in
seconds with two decimals, as ``steps/get_ctm.sh`` writes them; with a ``segments`` file
in the data dir, times are on the recording (``<reco> <channel> ...``, channel from
``reco2file_and_channel`` if present, else 1), as ``utils/convert_ctm.pl`` makes them.
Silence is not printed. Utterances that cannot be aligned (or whose hypothesis is empty)
are listed in ``<out>.report``.

``--model`` takes the project's GMM (exp/mono or its final.npz) or a Kaldi monophone
``final.mdl`` (or a Kaldi exp dir); the features are the data dir's MFCCs as the GMM
stage reads them (``steps_py.gmm.feats.open_mfcc`` plus deltas), so they must be the
features the model was trained on.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from steps_py.cli import StepError, add_jobs_options, step_main
from steps_py.fileio import atomic_write_text

if TYPE_CHECKING:
    from steps_py.gmm.jobs import Utterance
    from steps_py.gmm.topo import Lang

log = logging.getLogger("kaldi.ctm")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m steps_py.kaldi.ctm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--data",
        type=Path,
        required=True,
        help="data dir with mfcc/ features (and segments, if any)",
    )
    ap.add_argument(
        "--lang",
        type=Path,
        default=Path("data/lang"),
        help="lang dir with L.fst and phones/align_lexicon.int (default: %(default)s)",
    )
    ap.add_argument(
        "--model",
        type=Path,
        default=Path("exp/mono"),
        help="GMM: project exp dir / npz, or Kaldi final.mdl / exp dir (default: %(default)s)",
    )
    ap.add_argument(
        "--text",
        type=Path,
        default=None,
        help="'<utt> <words>' to align, e.g. a decode dir's hyp.txt (default: <data>/text)",
    )
    ap.add_argument(
        "--out",
        type=Path,
        required=True,
        help="CTM file to write (its report goes to <out>.report)",
    )
    ap.add_argument(
        "--frame-shift", type=float, default=0.01, help="seconds per frame (default: %(default)s)"
    )
    add_jobs_options(ap, "parallel alignment jobs")
    ap.add_argument(
        "--beam", type=float, default=10.0, help="alignment beam (default: %(default)s)"
    )
    ap.add_argument(
        "--retry-beam", type=float, default=40.0, help="alignment retry beam (default: %(default)s)"
    )
    ap.add_argument("--force", action="store_true", help="rewrite even if --out exists")
    return ap


def read_segments(data: Path) -> tuple[dict[str, tuple[str, float]], dict[str, tuple[str, str]]]:
    """segments (utt -> (reco, start)) and reco2file_and_channel (reco -> (file, channel)), if present."""
    from steps_py.data.kaldi_dir import read_kaldi_map

    segs: dict[str, tuple[str, float]] = {}
    if (data / "segments").is_file():
        for utt, v in read_kaldi_map(data / "segments").items():
            f = v.split()
            if len(f) != 3:
                raise StepError(
                    f"{data}/segments: line of {utt}: expected '<utt> <reco> <start> <end>'"
                )
            segs[utt] = (f[0], float(f[1]))
    r2fc: dict[str, tuple[str, str]] = {}
    if (data / "reco2file_and_channel").is_file():
        for reco, v in read_kaldi_map(data / "reco2file_and_channel").items():
            f = v.split()
            r2fc[reco] = (f[0], f[1] if len(f) > 1 else "1")
    return segs, r2fc


def ctm_lines(
    utt: str,
    segments: list,
    shift: float,
    words: dict[int, str],
    segs: dict[str, tuple[str, float]],
    r2fc: dict[str, tuple[str, str]],
) -> list[str]:
    name, chan, offset = utt, "1", 0.0
    if utt in segs:
        reco, offset = segs[utt]
        name, chan = r2fc.get(reco, (reco, "1"))
    return [
        f"{name} {chan} {offset + s.start * shift:.2f} {s.frames * shift:.2f} {words.get(s.word, str(s.word))}"
        for s in segments
    ]


def _utterances(
    data: Path, lang_dir: Path, lang: Lang, text: dict[str, str]
) -> tuple[list[Utterance], dict[str, str]]:
    """The utterances to align (features with deltas, word ids) and the reasons for the others."""
    from steps_py.gmm.feats import add_deltas, open_mfcc
    from steps_py.gmm.jobs import Utterance

    try:
        feats = open_mfcc(data)
    except SystemExit as e:  # open_mfcc reports a missing feats.scp this way
        raise StepError(str(e)) from None
    have = set(feats.utts)
    report: dict[str, str] = {}
    utts: list[Utterance] = []
    for utt in sorted(text):
        tokens = text[utt].split()
        if utt not in have:
            report[utt] = "no-features"
        elif not tokens:
            report[utt] = "empty-transcript"
        else:
            ids, n_oov = lang.word_ids(tokens)
            if n_oov:
                report[utt] = f"oov: {n_oov} words not in {lang_dir}/words.txt"
            else:
                utts.append(Utterance(utt, add_deltas(feats[utt]), ids))
    return utts, report


def run(args: argparse.Namespace) -> int:
    from steps_py.data.kaldi_dir import read_kaldi_map
    from steps_py.gmm.align import align_utterances
    from steps_py.gmm.jobs import AlignOptions
    from steps_py.gmm.topo import Lang, LangError
    from steps_py.kaldi.alignment import split_to_phones
    from steps_py.kaldi.export import load_model
    from steps_py.kaldi.word_align import WordAlignError, align_words
    from steps_py.lang.align_lexicon import read_align_lexicon_int

    if args.out.is_file() and not args.force:
        log.info("%s exists; skipping (use --force to redo)", args.out)
        return 0
    try:
        lang = Lang.load(args.lang)
    except LangError as e:
        raise StepError(str(e)) from None
    lex_path = args.lang / "phones" / "align_lexicon.int"
    if not lex_path.is_file():
        raise StepError(
            f"{lex_path} not found: rebuild the lang dir (python -m steps_py.lang.prepare --force) "
            "or copy it from Kaldi's prepare_lang.sh output"
        )
    lexicon = read_align_lexicon_int(lex_path)
    kmodel, _ = load_model(args.model)
    tm = kmodel.transition_model
    text_path = args.text or args.data / "text"
    if not text_path.is_file():
        raise StepError(f"{text_path} not found")
    text = read_kaldi_map(text_path, allow_empty_value=True)
    utts, report = _utterances(args.data, args.lang, lang, text)
    alis, failed, _ = align_utterances(
        lang, args.model, utts, args.nj, AlignOptions(beam=args.beam, retry_beam=args.retry_beam)
    )
    report.update(failed)
    segs, r2fc = read_segments(args.data)
    lines: list[str] = []
    for u in utts:
        if u.utt not in alis:
            continue
        try:
            words = align_words(split_to_phones(tm, alis[u.utt], u.utt), u.word_ids, lexicon)
        except (WordAlignError, ValueError) as e:
            report[u.utt] = f"word-alignment-failed: {e}"
            continue
        lines += ctm_lines(u.utt, words, args.frame_shift, lang.word_of_id, segs, r2fc)
    atomic_write_text(
        Path(str(args.out) + ".report"), "".join(f"{u} {r}\n" for u, r in sorted(report.items()))
    )
    atomic_write_text(args.out, "".join(x + "\n" for x in lines))
    done = len(text) - len(report)
    log.info(
        "CTM of %d of %d utterances (%d words) written to %s; %d not aligned (see %s.report)",
        done,
        len(text),
        len(lines),
        args.out,
        len(report),
        args.out,
    )
    if text and done == 0:
        raise StepError(f"no utterance of {text_path} could be aligned; see {args.out}.report")
    return 0


def main(argv: list[str] | None = None) -> int:
    return step_main("kaldi.ctm", build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
