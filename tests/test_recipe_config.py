"""run.sh's flags and its config contract: every mistake is a clear error before any work,
the shipped configs are valid, and docs/CONFIG.md lists exactly the keys run.sh accepts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "egs/synth/conf_tiny/run.conf"


def _run(*args: str, timeout: int = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "run.sh"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _conf(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "conf"
    d.mkdir(exist_ok=True)
    (d / "run.conf").write_text(text)
    return d


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (["--corpus", "timit"], "--corpus must be synth, aishell, kaldi or digits"),
        (["--corpus", "aishell", "--corpus-dir", "/nonexistent/aishell"], "does not exist"),
        (["--nj", "0"], "--nj '0': give a positive integer"),
        (["--bogus"], "unknown option '--bogus'"),
        (
            ["--stage", "5", "--stop-stage", "2"],
            "--stage 5 is after --stop-stage 2: nothing would run",
        ),
        (["--stage", "10"], "--stage 10: there is no such stage, the last one is 9"),
        (["--stage", "x"], "--stage 'x': give a stage number 0..9"),
        (["--stage"], "--stage needs a value"),
        (["--workdir"], "--workdir needs a value"),
        (["--seeds", "--force"], "--seeds needs a value"),
        (["--seeds", "0 x"], "'x' is not a seed"),
        (["--seeds", "1 1"], "seed 1 is given twice"),
        (["--seed", "-1"], "'-1' is not a seed"),
        (["--seeds", ""], "--seeds '': give one or more seeds"),
        (["--seeds", "  "], "--seeds '  ': give one or more seeds"),
        (["--encoding", "gb99"], "--encoding 'gb99' is not an encoding Python knows"),
    ],
)
def test_bad_flags_are_clear_errors_before_any_work(
    tmp_path: Path, args: list[str], msg: str
) -> None:
    p = _run(*args, "--workdir", str(tmp_path / "w")) if "--workdir" not in args else _run(*args)
    assert p.returncode == 2 and msg in p.stderr, (args, p.stderr)
    assert "unbound variable" not in p.stderr
    assert not (tmp_path / "w").exists()  # nothing was written


def test_dry_run_accepts_every_shipped_config(tmp_path: Path) -> None:
    for corpus in ("synth", "aishell", "kaldi", "digits"):
        p = _run("--corpus", corpus, "--corpus-dir", str(tmp_path), "--dry-run")
        assert p.returncode == 0 and "are valid" in p.stdout, (corpus, p.stderr)
    for conf in ("egs/synth/conf_tritgt", "egs/synth/conf_study_kaldi", "egs/synth/conf_study"):
        if (ROOT / conf / "run.conf").is_file():
            p = _run("--conf-dir", str(ROOT / conf), "--dry-run")
            assert p.returncode == 0 and "are valid" in p.stdout, (conf, p.stderr)
    conf = ROOT / "egs/digits/conf_monotgt"
    p = _run(
        "--corpus", "digits", "--corpus-dir", str(tmp_path), "--conf-dir", str(conf), "--dry-run"
    )
    assert p.returncode == 0 and "are valid" in p.stdout, p.stderr
    p = _run("--conf-dir", str(TINY.parent), "--dry-run", "--seeds", "3 4", "--stop-stage", "100")
    assert p.returncode == 0, p.stderr
    assert "stages 0..9 would run" in p.stdout  # a --stop-stage beyond the end means "to the end"
    assert "exp/dnn_ma_n2_seed3: dnn, --sync ma, 2 workers (simulate)" in p.stdout
    assert "exp/lstm_bmuf-nbm_n2_seed4" in p.stdout


def _tiny_with(tmp_path: Path, sed: tuple[str, str] | None = None, extra: str = "") -> Path:
    text = TINY.read_text()
    if sed is not None:
        assert re.search(sed[0], text, flags=re.M), sed
        text = re.sub(sed[0], sed[1], text, flags=re.M)
    return _conf(tmp_path, text + extra)


@pytest.mark.parametrize(
    ("sed", "extra", "msg"),
    [
        (
            None,
            'egs_opt[dnn]="--context 3"\n',
            "unknown key 'egs_opt' in {conf}; allowed keys: lm_order ",
        ),
        (None, 'train_opts_lstm="--epochs 3"\n', 'write train_opts[lstm]="..."'),
        (
            None,
            'sync_opts[bmuf_nbm]="--block-frames 100"\n',
            "sync_opts[bmuf_nbm]: unknown sync 'bmuf_nbm'",
        ),
        (None, 'egs_opts[cnn]=""\n', "egs_opts[cnn]: unknown model 'cnn' (models: dnn lstm)"),
        (None, 'train_opts[tdnn]=""\n', "train_opts[tdnn]: unknown model 'tdnn'"),
        ((r"^nnet_decode_opts=.*\n", ""), "", "missing required key 'nnet_decode_opts'"),
        ((r"^train_opts\[lstm\]=.*\n", ""), "", "missing train_opts[lstm]"),
        ((r"^egs_opts\[dnn\]=.*\n", ""), "", "missing egs_opts[dnn]"),
        ((r"^launcher=.*", "launcher=slurm"), "", "launcher='slurm': torchrun or simulate"),
        ((r"dnn:ma:2", "dnn:ma:0"), "", "train_runs: 'dnn:ma:0' is not model:sync:workers"),
        (
            (r"^egs_types=.*", 'egs_types="dnn"'),
            "",
            "train_runs: 'lstm:bmuf-nbm:2' is not model:sync:workers",
        ),
        ((r"^lm_order=.*", "lm_order=three"), "", "lm_order='three'"),
        (None, 'lm_arpa="no/such.arpa"\n', "lm_arpa='no/such.arpa': no such file"),
        (None, 'lm_prune="small"\n', "lm_prune='small': give an entropy-pruning threshold"),
        (None, "nnet_gmm=tri2\n", "nnet_gmm='tri2': mono or tri1"),
        (None, "nnet_gmm=tri1\n", "nnet_gmm=tri1 needs tri_opts (the triphone system)"),
    ],
)
def test_config_mistakes_name_the_key_and_the_file(
    tmp_path: Path, sed, extra: str, msg: str
) -> None:
    conf = _tiny_with(tmp_path, sed, extra)
    p = _run("--conf-dir", str(conf), "--dry-run")
    assert p.returncode == 2, p.stdout
    assert msg.format(conf=conf / "run.conf") in p.stderr, p.stderr
    assert str(conf / "run.conf") in p.stderr


def test_an_unknown_key_in_a_sourced_file_names_that_file(tmp_path: Path) -> None:
    common = tmp_path / "common.conf"
    common.write_text(TINY.read_text() + "gmm_optz=1\n")
    conf = _conf(tmp_path, f". {common}\n")
    p = _run("--conf-dir", str(conf), "--dry-run")
    assert p.returncode == 2 and f"unknown key 'gmm_optz' in {common}" in p.stderr, p.stderr


def _accepted_keys(tmp_path: Path) -> list[str]:
    conf = _tiny_with(tmp_path, None, "no_such_key=1\n")
    p = _run("--conf-dir", str(conf), "--dry-run")
    m = re.search(r"allowed keys: (.*)$", p.stderr, flags=re.M)
    assert m, p.stderr
    return m.group(1).split()


def test_docs_list_exactly_the_keys_run_sh_accepts(tmp_path: Path) -> None:
    accepted = _accepted_keys(tmp_path)
    doc = (ROOT / "docs/CONFIG.md").read_text()
    table = doc[doc.index("<!-- keys:begin -->") : doc.index("<!-- keys:end -->")]
    documented = re.findall(r"^\| `([a-z_]+)(?:\[[^\]]*\])?` \|", table, flags=re.M)
    assert len(documented) == len(set(documented)), documented
    assert sorted(documented) == sorted(accepted)
    # and every key a shipped config sets is documented
    for conf in sorted((ROOT / "egs").rglob("*.conf")):
        for key in re.findall(r"^([a-z_]+)(?:\[[^\]]*\])?=", conf.read_text(), flags=re.M):
            assert key in documented, (conf, key)


def test_run_sh_knows_the_trainers_sync_methods() -> None:
    from steps_py.parallel.sync import SYNC_CHOICES

    m = re.search(r"^syncs=\(([^)]*)\)", (ROOT / "run.sh").read_text(), flags=re.M)
    assert m and m.group(1).split() == list(SYNC_CHOICES)


def _can_mount_read_only(d: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    p = subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            f"mount --bind '{d}' '{d}' && mount -o remount,ro,bind '{d}' '{d}'",
        ],
        capture_output=True,
    )
    return p.returncode == 0


def test_read_only_workdir_fails_at_once(tmp_path: Path) -> None:
    work = tmp_path / "ro"
    work.mkdir()
    if _can_mount_read_only(work):  # root: a private read-only bind mount of the workdir
        cmd = [
            "unshare",
            "-m",
            "sh",
            "-c",
            f"mount --bind '{work}' '{work}' && mount -o remount,ro,bind '{work}' '{work}' "
            f"&& exec bash '{ROOT}/run.sh' --workdir '{work}'",
        ]
    elif os.geteuid() != 0:
        work.chmod(0o555)
        cmd = ["bash", str(ROOT / "run.sh"), "--workdir", str(work)]
    else:
        pytest.skip("running as root without mount namespaces: cannot make a read-only directory")
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    work.chmod(0o755)
    assert p.returncode == 1, p.stdout + p.stderr
    assert (
        f"cannot write to --workdir '{work}' (read-only file system, or no permission)" in p.stderr
    )
    assert "Traceback" not in p.stdout + p.stderr and "stage 0" not in p.stdout
    assert list(work.iterdir()) == []


def test_a_workdir_under_a_file_fails_at_once(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    p = _run("--workdir", str(tmp_path / "f" / "w"))
    assert p.returncode == 1 and "cannot write to --workdir" in p.stderr, p.stderr


def test_a_kaldi_cmd_sh_sets_where_jobs_run(tmp_path: Path) -> None:
    conf = _tiny_with(tmp_path)
    (conf / "cmd.sh").write_text('export train_cmd="queue.pl -q all.q"\n')
    p = _run("--conf-dir", str(conf), "--dry-run")
    assert p.returncode == 2
    assert f"{conf / 'cmd.sh'}: train_cmd='queue.pl -q all.q': give local (run.pl)" in p.stderr
    (conf / "cmd.sh").write_text('export train_cmd="slurm.pl --mem 2G"\n')
    assert _run("--conf-dir", str(conf), "--dry-run").returncode == 0
