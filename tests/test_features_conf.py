"""Kaldi feature configs (conf/{mfcc,fbank,pitch}.conf), 8 kHz features, pitch, per-utterance
CMVN, audio policy (channels, resampling) and deltas (kaldi-native-fbank's compute_deltas)."""

from __future__ import annotations

import json
from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np
import pytest
import soundfile as sf

from steps_py.data.kaldi_dir import KaldiDataDir
from steps_py.features.compute import main
from steps_py.features.conf import (
    ConfError,
    audio_policy_from_conf,
    read_feature_conf,
    read_pitch_conf,
)
from steps_py.features.extract import FeatureExtractor
from steps_py.features.io import FeatureReader
from steps_py.gmm.feats import add_deltas


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def voiced(seconds: float, sr: int, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A harmonic 'voice' with noise, in the int16 range."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8)) * 3000
    return (x + rng.normal(0, 100, t.size)).astype(np.float32)


def test_kaldi_config_syntax(tmp_path: Path) -> None:
    conf = write(
        tmp_path / "mfcc.conf",
        "# digits\n--sample-frequency=8000   # 8 kHz telephone\n"
        "--use_energy=FALSE\n--num-mel-bins=20\n\n--snip-edges\n--channel=1\n",
    )
    cfg = read_feature_conf(conf, "mfcc")
    o = cfg.opts
    assert (o.frame_opts.samp_freq, o.use_energy, o.mel_opts.num_bins, o.frame_opts.snip_edges) == (
        8000.0,
        False,
        20,
        True,
    )
    assert o.frame_opts.dither == 0.0 and o.num_ceps == 13  # dither 0 unless set; Kaldi defaults
    assert (cfg.channel, cfg.frame_length, cfg.frame_shift, cfg.dim) == (1, 200, 80, 13)
    assert audio_policy_from_conf(conf).sample_rate == 8000
    fb = read_feature_conf(
        write(tmp_path / "fbank.conf", "--num-mel-bins=40\n--use-energy=true\n"), "fbank"
    )
    assert fb.dim == 41
    for text, message in (
        ("--vtln-warp=1.1\n", r"mfcc.conf:1: --vtln-warp is not an option of compute-mfcc-feats"),
        ("--num-ceps=abc\n", r"mfcc.conf:1: --num-ceps=abc"),
        ("--use-energy=maybe\n", r"'maybe' is not a boolean"),
        (
            "# ok\nsample-frequency=8000\n",
            r"mfcc.conf:2: 'sample-frequency=8000' is not an option line",
        ),
        ("--window-type=triangle\n", r"--window-type=triangle; use one of"),
    ):
        with pytest.raises(ConfError, match=message):
            read_feature_conf(write(tmp_path / "mfcc.conf", text), "mfcc")
    with pytest.raises(ConfError, match="--num-ceps is not an option of compute-kaldi-pitch-feats"):
        read_pitch_conf(write(tmp_path / "pitch.conf", "--num-ceps=13\n"))


@pytest.mark.parametrize(
    ("kind", "conf"),
    [
        ("mfcc", "--sample-frequency=8000\n--use-energy=false\n"),
        ("fbank", "--sample-frequency=8000\n--num-mel-bins=23\n"),
        (
            "mfcc",
            "--use-energy=false\n--window-type=hamming\n--preemphasis-coefficient=0.95\n"
            "--num-ceps=20\n--num-mel-bins=30\n--frame-length=20\n--cepstral-lifter=0\n",
        ),
        (
            "fbank",
            "--remove-dc-offset=false\n--round-to-power-of-two=false\n--low-freq=64\n--high-freq=-400\n",
        ),
    ],
)
def test_numpy_engine_matches_knf_for_kaldi_configs(tmp_path: Path, kind: str, conf: str) -> None:
    cfg = read_feature_conf(write(tmp_path / f"{kind}.conf", conf), kind)
    x = voiced(1.3, cfg.sample_rate)
    x[2000:2600] = 0.0  # digital silence hits the log floor
    ours, ref = FeatureExtractor(cfg, "numpy"), FeatureExtractor(cfg, "knf")
    assert ours.engine == "numpy"
    a, b = ours(x), ref(x)
    assert a.shape == b.shape == (1 + (x.size - cfg.frame_length) // cfg.frame_shift, cfg.dim)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_options_the_numpy_engine_lacks_use_knf(tmp_path: Path) -> None:
    cfg = read_feature_conf(
        write(tmp_path / "mfcc.conf", "--sample-frequency=8000\n"), "mfcc"
    )  # energy on
    ex = FeatureExtractor(cfg)
    assert ex.engine == "knf" and ex(voiced(0.5, 8000)).shape[1] == 13


def test_deltas_equal_the_numpy_definition() -> None:
    def reference(feats: np.ndarray, order: int = 2, window: int = 2) -> np.ndarray:
        """The numpy add-deltas this recipe used before kaldi-native-fbank had compute_deltas."""
        base = np.arange(-window, window + 1, dtype=np.float64)
        base /= np.sum(base**2)
        filters = [np.array([1.0])]
        for _ in range(order):
            filters.append(np.convolve(filters[-1], base))
        t = feats.shape[0]
        out = [feats]
        for filt in filters[1:]:
            half = len(filt) // 2
            idx = np.clip(np.arange(t)[:, None] + np.arange(-half, half + 1)[None, :], 0, t - 1)
            out.append(np.einsum("tkd,k->td", feats[idx], filt).astype(np.float32))
        return np.concatenate(out, axis=1)

    rng = np.random.default_rng(3)
    for t in (1, 2, 4, 9, 300):
        x = (rng.standard_normal((t, 13)) * 20).astype(np.float32)
        np.testing.assert_allclose(add_deltas(x), reference(x), rtol=0, atol=1e-5)
        assert add_deltas(x).shape == (t, 39)
    assert add_deltas(np.zeros((0, 13), np.float32)).shape == (0, 39)


def make_dir(root: Path, sr: int, channels: int = 1, n: int = 4) -> Path:
    kd = KaldiDataDir()
    for i in range(n):
        utt = f"s{i % 2}-u{i}"
        x = voiced(0.8 + 0.1 * i, sr, f0=120 + 20 * i, seed=i) / 32768
        if channels == 2:
            x = np.stack([x, 0.5 * x[::-1]], axis=1)
        wav = root / "wav" / f"{utt}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        sf.write(wav, x, sr, subtype="PCM_16")
        kd.wav[utt], kd.text[utt], kd.utt2spk[utt] = str(wav), "一", f"s{i % 2}"
    d = root / "data"
    kd.write(d)
    return d


def test_8khz_mfcc_with_pitch_and_per_utterance_cmvn(tmp_path: Path) -> None:
    d = make_dir(tmp_path, 8000)
    mfcc = write(tmp_path / "mfcc.conf", "--sample-frequency=8000\n--use-energy=false\n")
    pitch = write(tmp_path / "pitch.conf", "--sample-frequency=8000\n")
    assert (
        main(
            [
                "--data",
                str(d),
                "--kind",
                "mfcc",
                "--conf",
                str(mfcc),
                "--pitch-conf",
                str(pitch),
                "--cmvn",
                "utterance",
                "--nj",
                "1",
            ]
        )
        == 0
    )
    done = json.loads((d / "mfcc" / ".done").read_text())
    assert done["dim"] == 16 and done["sample_rate"] == 8000 and done["cmvn"] == "utterance"
    assert (d / "mfcc/conf/mfcc.conf").read_text() == mfcc.read_text()
    raw, normed = FeatureReader(d, "mfcc", cmvn=False), FeatureReader(d, "mfcc")
    assert raw.dim == 16 and normed.cmvn_type == "utterance"
    u = raw.utts[0]
    x = sf.read(KaldiDataDir.load(d).wav[u], dtype="float32")[0] * 32768
    ref_mfcc = FeatureExtractor(read_feature_conf(mfcc, "mfcc"), "knf")(x)
    ref_pitch = knf.compute_and_process_kaldi_pitch(
        read_pitch_conf(pitch).pitch, read_pitch_conf(pitch).process, x
    )
    n = raw[u].shape[0]
    assert abs(len(ref_pitch) - len(ref_mfcc)) <= 2 and n == min(len(ref_pitch), len(ref_mfcc))
    np.testing.assert_allclose(raw[u][:, :13], ref_mfcc[:n], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(raw[u][:, 13:], ref_pitch[:n], rtol=1e-5, atol=1e-5)
    for utt in normed.utts:  # per-utterance CMVN: every utterance has zero mean on its own
        np.testing.assert_allclose(normed[utt].mean(0), 0.0, atol=1e-3)
    # other options: the finished dir is recomputed, not reused
    assert main(["--data", str(d), "--kind", "mfcc", "--conf", str(mfcc), "--nj", "1"]) == 0
    assert json.loads((d / "mfcc" / ".done").read_text())["dim"] == 13


def test_audio_policy_rate_and_channels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = make_dir(tmp_path, 16000, channels=2)
    conf8 = write(tmp_path / "mfcc.conf", "--sample-frequency=8000\n--use-energy=false\n")
    # 16 kHz audio, an 8 kHz config: refused, naming the fix
    assert main(["--data", str(d), "--kind", "mfcc", "--conf", str(conf8), "--nj", "1"]) == 1
    assert "--allow-downsample=true" in capsys.readouterr().err
    conf8.write_text(conf8.read_text() + "--allow-downsample=true\n--channel=1\n")
    assert main(["--data", str(d), "--kind", "mfcc", "--conf", str(conf8), "--nj", "1"]) == 0
    err = capsys.readouterr().err
    assert "4 utterances: resampled 16000 -> 8000 Hz" in err
    assert "4 utterances: 2 channels: channel 1 used (--channel=1)" in err
    done = json.loads((d / "mfcc" / ".done").read_text())
    assert done["audio_notes"] == {
        "resampled 16000 -> 8000 Hz": 4,
        "2 channels: channel 1 used (--channel=1)": 4,
    }
    feats = FeatureReader(d, "mfcc", cmvn=False)
    wav = KaldiDataDir.load(d).wav[feats.utts[0]]
    assert feats[feats.utts[0]].shape[0] == 1 + (sf.info(wav).frames // 2 - 200) // 80
