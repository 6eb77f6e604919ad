"""Data preparation: checked Kaldi data dirs `<out>/{train,dev,test}/` and `<out>/local/lm_text.txt`.

    python -m steps_py.data.prepare --manifests corpus/synth/manifests --out data \\
        --lexicon data/local/lexicon_pinyin.txt --lm-text corpus/synth/lm_text.txt
    python -m steps_py.data.prepare --kaldi-dirs /data/mydirs --out data --lexicon LEX \\
        [--encoding gb18030] [--audio-conf conf/mfcc.conf]

The input is a generic format (lhotse manifests, or Kaldi data dirs ``<dir>/<set>/`` with
wav.scp, text, utt2spk and optional segments); whatever is corpus-specific happens before,
in the corpus's ``local/`` code (see docs/NEW_CORPUS.md). Each utterance is checked: audio
readable, complete, at a sample rate and with channels the audio config accepts (the
features' Kaldi config: ``--sample-frequency``, ``--allow-downsample``, ``--channel``), a
segment inside its recording, long enough for its transcript; transcript non-empty after
normalisation (`steps_py.data.text`) and every token in the corpus's pronunciation lexicon
(``--lexicon``); ids unique, present in every file and decodable. Failures are skipped,
listed in `<out>/<set>/rejected.txt`, the first few named in the log; the stage fails if more
than 5 % of a set is rejected. What was done to accepted utterances (a channel chosen,
audio to be resampled, emoji or private-use characters removed, a byte-order mark
stripped) is counted in the log and in `<out>/<set>/report.txt`.

Utterance ids are kept as the corpus has them. Kaldi also wants utt2spk sorted by
utterance to be sorted by speaker; when a set breaks that rule the log says so, and
``--speaker-prefix`` prepends ``<speaker>-`` to every id to satisfy it. Finished sets hold a
`.done` marker; re-running skips them unless --force.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from steps_py.cli import StepError, add_jobs_options, dataclass_from_args, progress, step_main
from steps_py.data.audio import AudioPolicy, is_piped
from steps_py.data.kaldi_dir import (
    DataDirError,
    KaldiDataDir,
    Segment,
    speaker_order_violation,
    write_kaldi_map,
)
from steps_py.data.text import TOKEN_UNITS, describe_removed, normalize_transcript
from steps_py.data.validate import (
    CheckedUtt,
    RawSet,
    RecordingInfo,
    RejectionLimitError,
    check_audio,
    check_utterance,
    enforce_rejection_limit,
    summarize_changes,
    summarize_rejections,
)
from steps_py.fileio import atomic_path, atomic_write_text, is_done, mark_done, mark_unfinished
from steps_py.lang.lexicon import Lexicon, LexiconError, read_lexicon

log = logging.getLogger("data.prepare")

SETS = ("train", "dev", "test")


class DataPrepError(StepError):
    """Data preparation cannot make a usable data dir; the message names the set, file and fix."""


@dataclass(frozen=True)
class PrepareConfig:
    """What a data preparation is asked to do: its input (`manifests` or `kaldi_dirs`, one
    of them), outputs and checks. Fields are named as the flags (``--lm-text`` -> `lm_text`)."""

    manifests: Path | None  # lhotse manifest dir
    kaldi_dirs: Path | None  # dir of one Kaldi data dir per set
    out: Path
    sets: tuple[str, ...]
    lexicon: Path | None  # None: transcripts not checked for pronunciations
    token_unit: str  # one of TOKEN_UNITS
    encoding: str  # of Kaldi data-dir files and the LM text
    audio_conf: Path | None  # Kaldi feature config the audio must meet (None: 16 kHz mono)
    lm_text: Path | None  # None: the train transcripts
    speaker_prefix: bool  # prepend '<speaker>-' to utterance ids
    nj: int  # processes for the audio checks
    force: bool  # redo finished sets

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> PrepareConfig:
        """The configuration of `build_parser`'s options (built once, in `run`)."""
        return dataclass_from_args(cls, args, sets=tuple(args.sets))


def check_recordings(
    paths: list[str], policy: AudioPolicy, nj: int, desc: str
) -> dict[str, RecordingInfo]:
    """`check_audio` of each distinct file, in `nj` processes."""
    fn = partial(check_audio, policy=policy)
    if nj <= 1 or len(paths) < 64:
        infos = [fn(p) for p in progress(paths, desc=desc)]
    else:
        with ProcessPoolExecutor(nj) as ex:
            infos = list(progress(ex.map(fn, paths, chunksize=32), total=len(paths), desc=desc))
    return dict(zip(paths, infos, strict=True))


def build_data_dir(checked: Iterable[CheckedUtt], speaker_prefix: bool) -> KaldiDataDir:
    """KaldiDataDir of the accepted utterances (ids as given, or `<spk>-` prefixed)."""
    accepted = list(checked)
    kd = KaldiDataDir()
    with_segments = any(c.raw.rec is not None for c in accepted)
    for c in accepted:
        u = c.raw
        utt = f"{u.spk}-{u.utt}" if speaker_prefix and not u.utt.startswith(f"{u.spk}-") else u.utt
        if with_segments:
            rec = u.rec if u.rec is not None else u.utt
            if kd.wav.setdefault(rec, u.wav) != u.wav:
                raise DataDirError(
                    f"recording id '{rec}' names two files: {kd.wav[rec]} and {u.wav}"
                )
            kd.segments[utt] = Segment(rec, u.start, u.end, u.channel)
        else:
            kd.wav[utt] = u.wav
        kd.text[utt] = " ".join(c.tokens)
        kd.utt2spk[utt] = u.spk
        kd.utt2dur[utt] = c.duration
    return kd


def piped_line(checked: list[CheckedUtt]) -> list[str]:
    """The report line on accepted utterances whose audio is a piped wav.scp command."""
    n = sum(1 for c in checked if not c.reason and is_piped(c.raw.wav))
    return [f"audio: {n} utterances read through a piped wav.scp command"] if n else []


def ids_note(kd: KaldiDataDir, name: str, speaker_prefix: bool) -> str:
    """The report's line on utterance ids (warned about when Kaldi would refuse their order)."""
    line = (
        "ids: kept as in the corpus"
        if not speaker_prefix
        else "ids: '<speaker>-' prefixed (--speaker-prefix)"
    )
    bad_order = speaker_order_violation(kd.utt2spk)
    if bad_order:
        a, b = bad_order
        line += (
            f"; NOT sorted by speaker when sorted by utterance ({a} of {kd.utt2spk[a]} "
            f"sorts before {b} of {kd.utt2spk[b]}): Kaldi's validate_data_dir.sh will "
            "refuse this dir; rerun with --speaker-prefix to prepend '<speaker>-' to the ids"
        )
        log.warning("%s: %s", name, line)
    return line


def report_notes(
    raw: RawSet,
    checked: list[CheckedUtt],
    changes: list[str],
    policy: AudioPolicy,
    ids_line: str,
    lexicon_path: Path | None,
    lexicon: Lexicon | None,
) -> list[str]:
    """The report's lines after its first: audio, notes, changes, ids, lexicon."""
    return [
        f"audio: {policy.sample_rate} Hz expected; channel {policy.channel} "
        f"({'mono expected' if policy.channel == -1 else 'chosen'})",
        *raw.notes,
        *changes,
        *piped_line(checked),
        ids_line,
        f"lexicon: {lexicon_path}"
        if lexicon is not None
        else "lexicon: none (transcripts not checked for pronunciations)",
    ]


def prepare_set(
    raw: RawSet,
    out_dir: Path,
    config: PrepareConfig,
    policy: AudioPolicy,
    lexicon: Lexicon | None,
) -> KaldiDataDir:
    """Check, write `out_dir` atomically (with rejected.txt, report.txt, .done), enforce 5 %."""
    paths = list(dict.fromkeys(u.wav for u in raw.utts))
    recs = check_recordings(paths, policy, config.nj, f"check {raw.name}")
    checked = [
        check_utterance(u, recs[u.wav], policy, lexicon, config.token_unit) for u in raw.utts
    ]
    rejected = dict(raw.rejected)
    rejected.update({c.raw.utt: c.reason for c in checked if c.reason})
    total = len(raw.utts) + len(raw.rejected)
    listing = out_dir / "rejected.txt"
    for note in raw.notes:
        log.warning("%s: %s", raw.name, note) if "not valid" in note else log.info(
            "%s: %s", raw.name, note
        )
    summarize_rejections(raw.name, rejected, total, listing if rejected else None)
    try:
        enforce_rejection_limit(raw.name, len(rejected), total, listing)
    except RejectionLimitError:
        with atomic_path(out_dir) as tmp:  # leave only the listing, no .done
            tmp.mkdir()
            write_kaldi_map(tmp / "rejected.txt", rejected)
            mark_unfinished(tmp)
        raise
    ok = [c for c in checked if c.reason is None]
    if not ok:
        raise DataDirError(f"{raw.name}: no utterances left; see {listing}")
    kd = build_data_dir(ok, config.speaker_prefix)
    changes = summarize_changes(ok)
    for line in changes:
        log.warning("%s: %s", raw.name, line)
    ids_line = ids_note(kd, raw.name, config.speaker_prefix)
    hours = sum(kd.utt2dur.values()) / 3600
    codes = Counter(r.split(":", 1)[0].split()[0] for r in rejected.values())
    head = (
        f"set {raw.name}: {total} utterances in, {len(kd.utt2spk)} accepted ({hours:.3f} h, "
        f"{len(kd.spk2utt())} speakers), {len(rejected)} rejected"
        + (
            f" ({', '.join(f'{c} {k}' for k, c in codes.most_common())}; see rejected.txt)"
            if rejected
            else ""
        )
    )
    notes = report_notes(raw, checked, changes, policy, ids_line, config.lexicon, lexicon)
    report = [head, *notes]
    with atomic_path(out_dir) as tmp:
        kd.write(tmp)
        if rejected:
            write_kaldi_map(tmp / "rejected.txt", rejected)
        atomic_write_text(tmp / "report.txt", "".join(f"{line}\n" for line in report))
        mark_done(
            tmp,
            {
                "utterances": len(kd.utt2spk),
                "rejected": len(rejected),
                "rejected_by_code": dict(codes),
                "hours": round(hours, 4),
                "segments": bool(kd.segments),
                "changes": changes,
            },
        )
    log.info(
        "%s: wrote %s (%d utterances, %d speakers, %.2f h)",
        raw.name,
        out_dir,
        len(kd.utt2spk),
        len(kd.spk2utt()),
        hours,
    )
    return kd


def normalize_lm_lines(
    lines: Iterable[str], source: str, lexicon: Lexicon | None, unit: str
) -> list[str]:
    """Space-separated tokens per line; lines with unpronounceable tokens are dropped."""
    out: list[str] = []
    dropped = empty = 0
    removed: Counter[str] = Counter()
    for n, line in enumerate(lines, 1):
        tokens, rm = normalize_transcript(line.lstrip("\ufeff") if n == 1 else line, unit)
        removed.update(rm)
        if lexicon is not None and any(not lexicon.is_pronounceable(t) for t in tokens):
            dropped += 1
        elif not tokens:
            empty += 1
        else:
            out.append(" ".join(tokens))
    if dropped or empty:
        log.warning(
            "LM text %s: dropped %d lines with words that have no pronunciation, %d empty lines",
            source,
            dropped,
            empty,
        )
    if describe_removed(removed):
        log.warning("LM text %s: removed %s characters", source, describe_removed(removed))
    return out


def write_lm_text(
    config: PrepareConfig, train: KaldiDataDir | None, lexicon: Lexicon | None
) -> None:
    target = config.out / "local" / "lm_text.txt"
    lm_file = config.lm_text
    if lm_file is not None:
        if not lm_file.is_file():
            raise DataPrepError(
                f"LM text {lm_file} not found; pass --lm-text FILE (one sentence per line)"
            )
        try:
            with open(lm_file, encoding=config.encoding) as f:
                lines = normalize_lm_lines(f, str(lm_file), lexicon, config.token_unit)
        except UnicodeDecodeError as e:
            raise DataPrepError(
                f"LM text {lm_file} is not valid {config.encoding} ({e}); pass --encoding"
            ) from None
    else:
        if train is None and "train" not in config.sets:
            log.info("LM text: not written (no --lm-text, and train is not among --sets)")
            return
        if train is None:
            train = KaldiDataDir.load(config.out / "train")
        lines = [train.text[u] for u in train.utts]
        log.info("LM text: using the %d train transcripts", len(lines))
    if not lines:
        raise DataPrepError(
            f"LM text from {lm_file or 'train transcripts'} is empty after normalisation"
        )
    atomic_write_text(target, "".join(line + "\n" for line in lines))
    log.info(
        "wrote %s (%d sentences, %d tokens)", target, len(lines), sum(len(x.split()) for x in lines)
    )


def import_sets(config: PrepareConfig, sets: tuple[str, ...]) -> dict[str, RawSet]:
    manifests, kaldi_dirs = config.manifests, config.kaldi_dirs
    if manifests is not None:
        from steps_py.data.manifests import import_manifest_set

        if not manifests.is_dir():
            raise DataPrepError(
                f"--manifests {manifests} does not exist (prepare the corpus first, e.g. python -m local.synth or python -m local.aishell.prepare)"
            )
        base = manifests.parent
        return {s: import_manifest_set(manifests, s, base_dir=base) for s in sets}
    from steps_py.data.kaldi_import import import_kaldi_corpus

    assert kaldi_dirs is not None  # the parser asks for one of the two
    if not kaldi_dirs.is_dir():
        raise DataPrepError(f"--kaldi-dirs {kaldi_dirs} does not exist")
    return import_kaldi_corpus(kaldi_dirs, sets, config.encoding)


def audio_policy(audio_conf: Path | None) -> AudioPolicy:
    if audio_conf is None:
        return AudioPolicy()
    from steps_py.features.conf import ConfError, audio_policy_from_conf

    try:
        return audio_policy_from_conf(audio_conf)
    except ConfError as e:
        raise DataPrepError(str(e)) from None


def read_checked_lexicon(path: Path | None) -> Lexicon | None:
    """The lexicon transcripts are checked against (None: no --lexicon, not checked)."""
    if path is None:
        log.warning("no --lexicon: transcripts are not checked for words without a pronunciation")
        return None
    try:
        lexicon = read_lexicon(path)
    except (LexiconError, OSError) as e:
        raise DataPrepError(f"--lexicon {path}: {e}") from None
    log.info("checking transcripts against %s (%d words)", path, len(lexicon.words))
    return lexicon


def prepare(config: PrepareConfig) -> int:
    """Prepare `config.sets` not done yet (all with `force`) and the LM text; exit status."""
    sets, out = config.sets, config.out
    lm_target = out / "local" / "lm_text.txt"
    todo = [s for s in sets if config.force or not is_done(out / s)]
    if not todo and lm_target.is_file() and not config.force:
        log.info(
            "%s: data dirs %s and %s already done; skipping (use --force to redo)",
            out,
            ", ".join(sets),
            lm_target,
        )
        return 0
    for s in sets:
        if s not in todo:
            log.info("%s already done; skipping it (use --force to redo)", out / s)
    lexicon = read_checked_lexicon(config.lexicon)
    policy = audio_policy(config.audio_conf)
    try:
        raw_sets = import_sets(config, tuple(todo)) if todo else {}
        prepared: dict[str, KaldiDataDir] = {}
        errors: list[str] = []
        for s in todo:
            try:
                prepared[s] = prepare_set(raw_sets[s], out / s, config, policy, lexicon)
            except (RejectionLimitError, DataDirError) as e:
                errors.append(str(e))
        if errors:
            raise DataPrepError("\n".join(errors))
        write_lm_text(config, prepared.get("train"), lexicon)
    except (DataDirError, RejectionLimitError) as e:
        raise DataPrepError(str(e)) from None
    return 0


def run(args: argparse.Namespace) -> int:
    return prepare(PrepareConfig.from_args(args))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m steps_py.data.prepare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--manifests",
        type=Path,
        default=None,
        help="lhotse manifest dir: *recordings_<set>.jsonl.gz, *supervisions_<set>.jsonl.gz",
    )
    src.add_argument(
        "--kaldi-dirs",
        type=Path,
        default=None,
        help="dir holding one Kaldi data dir per set (<dir>/train, <dir>/dev, ...)",
    )
    p.add_argument(
        "--out", type=Path, default=Path("data"), help="output root (default: %(default)s)"
    )
    p.add_argument(
        "--sets", nargs="+", default=list(SETS), help="sets to prepare (default: %(default)s)"
    )
    p.add_argument(
        "--lexicon",
        type=Path,
        default=None,
        help="the corpus's pronunciation lexicon (Kaldi lexicon.txt); utterances with other "
        "words are rejected (default: none, not checked)",
    )
    p.add_argument(
        "--token-unit",
        choices=TOKEN_UNITS,
        default="char",
        help="char: every character a word (Mandarin); word: whitespace-separated words "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--encoding",
        default="utf-8",
        help="encoding of Kaldi data-dir files and --lm-text, e.g. gb18030 (default: %(default)s)",
    )
    p.add_argument(
        "--audio-conf",
        type=Path,
        default=None,
        help="Kaldi feature config whose --sample-frequency, --allow-downsample, "
        "--allow-upsample and --channel the audio must meet (default: 16 kHz, mono)",
    )
    p.add_argument(
        "--lm-text",
        type=Path,
        default=None,
        help="LM sentences, one per line (default: the train transcripts)",
    )
    p.add_argument(
        "--speaker-prefix",
        action="store_true",
        help="prepend '<speaker>-' to utterance ids (Kaldi's sorting rule); default: keep ids",
    )
    add_jobs_options(p, "parallel processes for audio checks")
    p.add_argument("--force", action="store_true", help="redo finished sets")
    return p


def main(argv: list[str] | None = None) -> int:
    return step_main(
        "data.prepare", build_parser(), run, argv, log_file=lambda a: a.out / "log" / "prepare.log"
    )


if __name__ == "__main__":
    sys.exit(main())
