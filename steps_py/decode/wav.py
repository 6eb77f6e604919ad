"""Decode audio files with a trained model bundle and print the text (icefall's pretrained.py,
Kaldi's online2-wav-nnet3-latgen-faster, for this recipe's hybrid models).

    python -m steps_py.decode.wav --model exp/dnn_ma_n4/bundle_global a.wav b.flac
    python -m steps_py.decode.wav --model BUNDLE --wav-scp data/test/wav.scp --out hyp.txt

`--model` is a bundle dir (``steps_py.decode.bundle``; run.sh writes one per network after
decoding): the network and its priors, the graph, the feature config, CMVN mode, sample
rate and the LM weight and insertion penalty chosen on dev. Each file is read as feature extraction
reads audio (a ``wav.scp`` value may be a piped command), turned into the same features,
normalised by its own mean (speaker CMVN in training: each file is taken as one speaker's
only utterance), scored by the network and searched through the graph with the dev decode's
beams; the best path at the chosen LM weight and penalty is printed as ``<id> <words>``
(the id: the file name without its extension, or the wav.scp id). Audio at another sample
rate than the model's is refused with the fix (``--resample`` resamples it instead).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf

from steps_py.cli import step_main
from steps_py.data.audio import AudioError, open_audio, read_samples
from steps_py.data.kaldi_dir import DataDirError, read_kaldi_map
from steps_py.decode.bundle import Bundle, BundleError, read_bundle
from steps_py.decode.inputs import DecodeError, read_words
from steps_py.decode.scorers import NnetScorer
from steps_py.decode.search import Search, SearchConfig
from steps_py.features.cmvn import apply_mean_norm, speaker_mean, utterance_stats
from steps_py.features.compute import paste_pitch
from steps_py.features.conf import ConfError, read_feature_conf, read_pitch_conf
from steps_py.features.extract import FeatureExtractor, PitchExtractor

log = logging.getLogger("decode.wav")


class WavDecodeError(DecodeError):
    """One audio file cannot be decoded; the message names it and the fix."""


class WavDecoder:
    """A bundle loaded once: audio file (or wav.scp value) -> words."""

    def __init__(self, bundle: Bundle, resample: bool = False) -> None:
        self.bundle = bundle
        try:
            self.cfg = read_feature_conf(bundle.conf, bundle.kind)
            pitch_cfg = read_pitch_conf(bundle.pitch_conf) if bundle.pitch_conf else None
        except ConfError as e:
            raise BundleError(str(e)) from None
        self.policy = replace(
            self.cfg.policy, allow_downsample=resample or self.cfg.policy.allow_downsample,
            allow_upsample=resample or self.cfg.policy.allow_upsample,
        )  # fmt: skip
        self.extract = FeatureExtractor(self.cfg)
        self.pitch = PitchExtractor(pitch_cfg) if pitch_cfg is not None else None
        self.scorer = NnetScorer(bundle.model, bundle.priors)
        self.search = Search(bundle.graph, SearchConfig(**bundle.search), self.scorer.num_pdfs)
        self.words = read_words(bundle.graph / "words.txt")

    def features(self, wav: str) -> np.ndarray:
        """The bundle's features of one file, mean-normalised over the file."""
        try:
            src = open_audio(wav)
            rate = sf.info(src).samplerate
            if rate != self.cfg.sample_rate and not self._may_resample(rate):
                raise WavDecodeError(
                    f"{wav}: {rate} Hz audio, but the model {self.bundle.dir} was trained on "
                    f"{self.cfg.sample_rate} Hz audio; resample it (sox {wav} -r "
                    f"{self.cfg.sample_rate} out.wav) or pass --resample"
                )
            samples = read_samples(src, self.policy)
        except (sf.SoundFileError, RuntimeError, OSError, AudioError) as e:
            raise WavDecodeError(
                f"{wav}: cannot read the audio ({str(e).splitlines()[0]})"
            ) from None
        feats = self.extract(samples)
        if self.pitch is not None:
            pasted = paste_pitch(feats, self.pitch(samples))
            if pasted is None:
                raise WavDecodeError(f"{wav}: pitch and {self.cfg.kind} lengths differ")
            feats = pasted
        if feats.shape[0] == 0:
            raise WavDecodeError(f"{wav}: too short ({samples.size} samples give no frame)")
        return apply_mean_norm(feats, speaker_mean(utterance_stats(feats)))

    def _may_resample(self, rate: int) -> bool:
        p = self.policy
        return (rate > p.sample_rate and p.allow_downsample) or (
            rate < p.sample_rate and p.allow_upsample
        )

    def decode(self, wav: str) -> list[str]:
        """The words of one file at the bundle's LM weight and penalty."""
        ll = self.scorer.loglikes_of(self.features(wav))
        try:
            if self.search.cfg.lattices:
                lat, _ = self.search.lattice(ll)
                ids = lat.best_paths([(self.bundle.lm_weight, self.bundle.penalty)])[0][0]
            else:
                ids, _ = self.search.best_path(ll, 1.0 / self.bundle.lm_weight)
        except (RuntimeError, ValueError) as e:
            raise WavDecodeError(f"{wav}: {e}") from None
        return [self.words[i] for i in ids]


def read_inputs(wavs: list[str], wav_scp: Path | None) -> list[tuple[str, str]]:
    """(id, wav.scp value) of every input: files by their name, or a wav.scp's lines."""
    items = [(Path(w).stem, w) for w in wavs]
    if wav_scp is not None:
        try:
            items += list(read_kaldi_map(wav_scp).items())
        except DataDirError as e:
            raise WavDecodeError(str(e)) from None
    if not items:
        raise WavDecodeError("no audio given: pass files, or --wav-scp FILE")
    return items


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m steps_py.decode.wav",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--model", type=Path, required=True, help="bundle dir (steps_py.decode.bundle)")
    ap.add_argument("wavs", nargs="*", help="audio files (any format soundfile reads)")
    ap.add_argument(
        "--wav-scp",
        type=Path,
        default=None,
        help="a Kaldi wav.scp (files or pipes) (default: none)",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="also write '<id> <words>' lines here (default: stdout only)",
    )
    ap.add_argument(
        "--resample",
        action="store_true",
        help="resample audio at another rate instead of refusing it",
    )
    return ap


def run(args: argparse.Namespace) -> int:
    items = read_inputs(args.wavs, args.wav_scp)
    decoder = WavDecoder(read_bundle(args.model), resample=args.resample)
    lines, failed = [], 0
    for utt, wav in items:
        try:
            words = decoder.decode(wav)
        except WavDecodeError as e:
            log.error("%s", e)
            failed += 1
            continue
        lines.append(f"{utt} {' '.join(words)}".rstrip())
        print(lines[-1], flush=True)
    if args.out is not None:
        from steps_py.fileio import atomic_write_text

        atomic_write_text(args.out, "".join(f"{ln}\n" for ln in lines))
    if failed:
        log.error("%d of %d files could not be decoded (see above)", failed, len(items))
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return step_main("decode.wav", build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
