"""Decoding audio files directly (steps_py.decode.wav) with a model bundle
(steps_py.decode.bundle): the same text as the dev decode dir for the same utterances, piped
wav.scp entries included, and an 8 kHz model refusing 16 kHz audio with the fix."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from steps_py.decode import bundle as bundle_cli
from steps_py.decode import wav as wav_cli
from steps_py.decode.api import DecodeRequest, decode_models
from steps_py.decode.search import SearchConfig
from steps_py.features.compute import main as compute_main
from tests.toy_decode import build_graph, tiny_nnet

UTTS = {"spk0-u0": "B A C", "spk1-u1": "A B"}


def noise_wav(path: Path, seed: int, seconds: float = 1.2, sr: int = 16000) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.2 * np.sin(2 * np.pi * (200 + 300 * seed) * t) * (1 + np.sin(2 * np.pi * 1.5 * t))
    x += 0.05 * rng.standard_normal(t.size)
    sf.write(path, x.astype(np.float32), sr, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def decoded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("wav")
    graph, _ = build_graph(root)
    model = tiny_nnet(root / "final.safetensors", int((graph / "num_pdfs").read_text()), seed=0)
    dev = root / "dev"
    dev.mkdir()
    wavs = {u: noise_wav(root / f"{u}.wav", seed=i) for i, u in enumerate(UTTS)}
    (dev / "wav.scp").write_text("".join(f"{u} {w}\n" for u, w in wavs.items()))
    (dev / "text").write_text("".join(f"{u} {t}\n" for u, t in UTTS.items()))
    (dev / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in UTTS))
    conf = root / "fbank.conf"
    conf.write_text("--num-mel-bins=13\n")  # the toy network's input dim
    assert (
        compute_main(["--data", str(dev), "--kind", "fbank", "--conf", str(conf), "--nj", "1"]) == 0
    )
    req = DecodeRequest(search=SearchConfig(beam=12.0, lattice_beam=6.0, acoustic_scale=0.1))
    decode_models([model], graph, dev, [root / "decode_dev"], nj=1, request=req)
    args = ["--model", str(model), "--graph", str(graph), "--dev-decode", str(root / "decode_dev")]
    assert bundle_cli.main([*args, "--feats", str(dev), "--out", str(root / "bundle")]) == 0
    return {"root": root, "bundle": root / "bundle", "dev": dev, **{u: w for u, w in wavs.items()}}


def hyp_of(decode_dir: Path) -> dict[str, str]:
    rows = [ln.split(maxsplit=1) + [""] for ln in (decode_dir / "hyp.txt").read_text().splitlines()]
    return {r[0]: r[1].strip() for r in rows}


def test_wav_decoding_gives_the_decode_dirs_text(
    decoded, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = json.loads((decoded["bundle"] / "bundle.json").read_text())
    assert meta["lm_weight"] == float((decoded["root"] / "decode_dev" / "best_lmwt").read_text())
    assert (
        meta["cmvn"] == "speaker"
        and meta["sample_rate"] == 16000
        and meta["conf"] == "conf/fbank.conf"
    )
    wavs = [str(decoded[u]) for u in UTTS]
    out = decoded["root"] / "hyp_wav.txt"
    assert wav_cli.main(["--model", str(decoded["bundle"]), *wavs, "--out", str(out)]) == 0
    printed = dict((ln.split(maxsplit=1) + [""])[:2] for ln in capsys.readouterr().out.splitlines())
    want = hyp_of(decoded["root"] / "decode_dev")
    assert {u: t.strip() for u, t in printed.items()} == want
    assert len(set(want.values())) == 2 and all(want.values())  # different words per file
    assert out.read_text().splitlines()[0].startswith("spk0-u0")

    # a wav.scp with a piped entry decodes the same
    scp = decoded["root"] / "wav.scp"
    cat = f"{sys.executable} -c \"import sys; sys.stdout.buffer.write(open(sys.argv[1], 'rb').read())\""
    scp.write_text(f"x1 {cat} {decoded['spk1-u1']} |\n")
    assert wav_cli.main(["--model", str(decoded["bundle"]), "--wav-scp", str(scp)]) == 0
    assert capsys.readouterr().out.strip() == f"x1 {want['spk1-u1']}".strip()


def test_an_8khz_model_refuses_16khz_audio(
    decoded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    b8 = tmp_path / "bundle8k"
    shutil.copytree(decoded["bundle"], b8)
    (b8 / "conf" / "fbank.conf").write_text("--sample-frequency=8000\n--num-mel-bins=13\n")
    wav = decoded["spk0-u0"]
    assert wav_cli.main(["--model", str(b8), str(wav)]) == 1
    err = capsys.readouterr().err
    assert (
        f"{wav}: 16000 Hz audio, but the model {b8} was trained on 8000 Hz audio; resample it "
        f"(sox {wav} -r 8000 out.wav) or pass --resample"
    ) in err
    assert wav_cli.main(["--model", str(b8), str(wav), "--resample"]) == 0


def test_not_a_bundle_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert wav_cli.main(["--model", str(tmp_path), "a.wav"]) == 1
    assert "bundle.json not found: --model must be a bundle dir" in capsys.readouterr().err


def test_a_best_path_decode_gives_its_bundle(decoded, capsys: pytest.CaptureFixture[str]) -> None:
    """The recipe's default NN decode is best-path only (--no-lattices): its bundle searches so."""
    root, dev = decoded["root"], decoded["dev"]
    model = root / "final.safetensors"
    req = DecodeRequest(search=SearchConfig(beam=12.0, acoustic_scale=0.1, lattices=False))
    decode_models([model], root / "graph", dev, [root / "decode_bp"], nj=1, request=req)
    args = [
        "--model",
        str(model),
        "--graph",
        str(root / "graph"),
        "--dev-decode",
        str(root / "decode_bp"),
    ]
    assert (
        bundle_cli.main(
            [*args, "--feats", str(dev), "--out", str(root / "bundle_bp"), "--copy-graph"]
        )
        == 0
    )
    meta = json.loads((root / "bundle_bp" / "bundle.json").read_text())
    assert meta["search"]["lattices"] is False and meta["graph"] == "graph"
    capsys.readouterr()
    assert wav_cli.main(["--model", str(root / "bundle_bp"), *(str(decoded[u]) for u in UTTS)]) == 0
    printed = dict((ln.split(maxsplit=1) + [""])[:2] for ln in capsys.readouterr().out.splitlines())
    assert {u: t.strip() for u, t in printed.items()} == hyp_of(root / "decode_bp")


def test_a_damaged_bundle_json_is_named(tmp_path: Path) -> None:
    from steps_py.decode.bundle import BundleError, read_bundle

    (tmp_path / "bundle.json").write_text('{"format": ', encoding="utf-8")
    with pytest.raises(BundleError, match=r"bundle.json is damaged .*write the bundle again"):
        read_bundle(tmp_path)
