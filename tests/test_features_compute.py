"""Stage 3 (steps_py.features): Kaldi definitions, parallel extraction, CMVN, FeatureReader."""

from __future__ import annotations

import shutil
from pathlib import Path

import kaldi_native_fbank as knf
import kaldi_native_io as kio
import numpy as np
import pytest
import soundfile as sf

from steps_py.data.kaldi_dir import KaldiDataDir
from steps_py.features.compute import main, split_items
from steps_py.features.extract import FeatureExtractor, read_audio
from steps_py.features.io import FeatureReader

SR = 16000


def sine(freq: float, seconds: float, amp: float = 8000.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_data_dir(root: Path, n_spk: int = 3, per_spk: int = 4) -> KaldiDataDir:
    """Speakers with different tones and loudness, so per-speaker means differ."""
    rng = np.random.default_rng(1)
    kd = KaldiDataDir()
    for s in range(n_spk):
        spk = f"spk{s}"
        for i in range(per_spk):
            utt = f"{spk}-{i:02d}"
            x = sine(
                300 + 200 * s + 10 * i, 0.3 + 0.1 * i, amp=2000 * (s + 1)
            ) + 100 * rng.standard_normal(int((0.3 + 0.1 * i) * SR))
            wav = root / "wav" / f"{utt}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            sf.write(wav, np.clip(x / 32768, -1, 1), SR, subtype="PCM_16")
            kd.wav[utt], kd.text[utt], kd.utt2spk[utt] = str(wav), "你 好", spk
    kd.write(root / "data" / "train")
    return kd


@pytest.mark.parametrize("engine", ["numpy", "knf"])
def test_frame_count_and_dims_follow_kaldi(engine: str) -> None:
    for kind, dim in (("mfcc", 13), ("fbank", 40)):
        ex = FeatureExtractor(kind, engine)
        for n in (400, 401, 559, 560, 16000, 12345):
            f = ex(sine(440, n / SR))
            assert f.shape == (1 + (n - 400) // 160, dim) and f.dtype == np.float32
        assert ex(np.zeros(399, np.float32)).shape == (0, dim)


@pytest.mark.parametrize("engine", ["numpy", "knf"])
def test_fbank_of_a_sine_peaks_in_the_right_mel_bin(engine: str) -> None:
    # Kaldi mel scale: 1127 ln(1 + f/700); 40 bins with centres evenly spaced in mel between 20 Hz and 8 kHz.
    def mel(f: float) -> float:
        return 1127.0 * np.log(1.0 + f / 700.0)

    lo, hi = mel(20.0), mel(8000.0)
    centres = lo + (hi - lo) * np.arange(1, 41) / 41
    fb = FeatureExtractor("fbank", engine)
    for freq in (250.0, 1000.0, 3000.0, 6000.0):
        peak = int(np.argmax(fb(sine(freq, 0.5)).mean(axis=0)))
        assert abs(peak - int(np.argmin(np.abs(centres - mel(freq))))) <= 1, freq


def knf_reference(kind: str, x: np.ndarray) -> np.ndarray:
    """kaldi-native-fbank directly, with Kaldi defaults except dither 0 / no energy / 40 fbank bins."""
    if kind == "mfcc":
        opts = knf.MfccOptions()
        comp_cls = knf.OnlineMfcc
    else:
        opts = knf.FbankOptions()
        opts.mel_opts.num_bins = 40
        comp_cls = knf.OnlineFbank
    opts.frame_opts.dither = 0.0
    opts.use_energy = False
    comp = comp_cls(opts)
    comp.accept_waveform(SR, x)
    comp.input_finished()
    return np.stack([comp.get_frame(i) for i in range(comp.num_frames_ready)])


@pytest.mark.parametrize("kind", ["mfcc", "fbank"])
def test_numpy_engine_matches_kaldi_native_fbank(kind: str) -> None:
    rng = np.random.default_rng(7)
    speechy = (
        sine(700, 0.7)
        + sine(2100, 0.7, amp=1000)
        + rng.normal(0, 200, int(0.7 * SR)).astype(np.float32)
    )
    with_silence = speechy.copy()
    with_silence[1000:3000] = 0.0  # digital silence hits the log floor
    loud_clipped = np.clip(speechy * 10, -32768, 32767).astype(np.float32)
    long = np.tile(speechy, 70)  # > BLOCK_FRAMES frames: blockwise path
    for x in (speechy, with_silence, loud_clipped, long):
        ours = FeatureExtractor(kind)(x)
        np.testing.assert_array_equal(ours, FeatureExtractor(kind)(x))  # deterministic (dither 0)
        ref = knf_reference(kind, x)
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(FeatureExtractor(kind, "knf")(x), ref, rtol=1e-6, atol=1e-5)


def test_split_items_is_contiguous_and_complete() -> None:
    items = [(str(i), "s", "w") for i in range(10)]
    parts = split_items(items, 3)
    assert [len(p) for p in parts] == [3, 4, 3] and sum(parts, []) == items
    assert len(split_items(items[:2], 8)) == 2


@pytest.mark.parametrize("kind", ["mfcc", "fbank"])
def test_compute_parallel_cmvn_and_reader(tmp_path: Path, kind: str) -> None:
    kd = make_data_dir(tmp_path)
    data = tmp_path / "data" / "train"
    assert main(["--data", str(data), "--kind", kind, "--nj", "2"]) == 0
    fdir = data / kind
    assert (
        (fdir / ".done").is_file()
        and (fdir / f"raw_{kind}.1.ark").is_file()
        and (fdir / f"raw_{kind}.2.ark").is_file()
    )
    assert not list(tmp_path.glob(f"data/train/.{kind}.tmp-*"))
    keys = [line.split()[0] for line in (fdir / "feats.scp").read_text().splitlines()]
    assert keys == kd.utts  # sorted, complete

    raw = FeatureReader(data, kind, cmvn=False)
    normed = FeatureReader(data, kind)
    dim = 13 if kind == "mfcc" else 40
    assert raw.dim == normed.dim == dim and len(normed) == len(kd.utts) and list(normed) == kd.utts
    # raw features equal a direct computation from the wav
    u0 = kd.utts[0]
    np.testing.assert_allclose(
        raw[u0], FeatureExtractor(kind)(read_audio(kd.wav[u0])), rtol=1e-6, atol=1e-5
    )

    # CMVN stats: Kaldi layout, equal to sums over each speaker's frames
    with kio.RandomAccessDoubleMatrixReader(f"scp:{fdir / 'cmvn.scp'}") as r:
        for spk, utts in kd.spk2utt().items():
            frames = np.concatenate([raw[u] for u in utts]).astype(np.float64)
            st = r[spk]
            assert st.shape == (2, dim + 1)
            np.testing.assert_allclose(st[0, :dim], frames.sum(0), rtol=1e-6, atol=1e-3)
            np.testing.assert_allclose(st[1, :dim], (frames**2).sum(0), rtol=1e-6, atol=1e-2)
            assert st[0, dim] == len(frames)
            # apply-cmvn --norm-vars=false: zero mean over the speaker's frames, not over each utterance
            speaker_frames = np.concatenate([normed[u] for u in utts])
            np.testing.assert_allclose(speaker_frames.mean(0), 0.0, atol=1e-3)
    assert np.abs(normed[u0].mean(0)).max() > 1e-2

    # idempotent, and still readable after the data dir moves (absolute paths in the scp)
    stamp = (fdir / "feats.scp").stat().st_mtime_ns
    assert main(["--data", str(data), "--kind", kind, "--nj", "2"]) == 0
    assert (fdir / "feats.scp").stat().st_mtime_ns == stamp
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "data", moved)
    again = FeatureReader(moved / "train", kind)
    np.testing.assert_array_equal(again[u0], normed[u0])


def test_unreadable_audio_is_listed_not_fatal(tmp_path: Path) -> None:
    kd = make_data_dir(tmp_path, n_spk=3, per_spk=8)
    data = tmp_path / "data" / "train"
    Path(kd.wav[kd.utts[5]]).write_bytes(b"not a wav")
    assert main(["--data", str(data), "--kind", "fbank", "--nj", "1", "--engine", "knf"]) == 0
    reader = FeatureReader(data, "fbank")
    assert kd.utts[5] not in reader and len(reader) == len(kd.utts) - 1
    assert (
        (data / "fbank" / "rejected.txt").read_text().startswith(f"{kd.utts[5]} unreadable-audio")
    )
    # more than 5 % unreadable fails without leaving a finished dir
    for u in kd.utts[:3]:
        Path(kd.wav[u]).write_bytes(b"")
    assert main(["--data", str(data), "--kind", "mfcc", "--nj", "1"]) == 1
    assert not (data / "mfcc").exists()


def test_nan_audio_is_listed_and_never_reaches_cmvn(tmp_path: Path) -> None:
    """A float WAV with NaN samples given straight to stage 3 (no stage-1 check)."""
    kd = make_data_dir(tmp_path, n_spk=3, per_spk=8)
    data = tmp_path / "data" / "train"
    bad = kd.utts[5]
    x, _ = sf.read(kd.wav[bad], dtype="float32")
    x[100:103] = np.nan
    sf.write(kd.wav[bad], x, SR, subtype="FLOAT")
    assert main(["--data", str(data), "--kind", "fbank", "--nj", "1"]) == 0
    listing = (data / "fbank" / "rejected.txt").read_text()
    assert listing == (
        f"{bad} non-finite: 3 of {x.size} audio samples of {kd.wav[bad]} are NaN or inf (the "
        "first at index 100); fix or drop the recording\n"
    )
    reader = FeatureReader(data, "fbank")
    assert bad not in reader and len(reader) == len(kd.utts) - 1
    assert all(np.isfinite(reader[u]).all() for u in reader.utts)  # CMVN applied: finite
