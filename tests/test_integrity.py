"""Nothing lost, nothing stale, nothing unreadable: each reproduction of the data-integrity review
is a test here (changed corpus, changed setting, two trainers, corrupt checkpoint, missing
outputs, input checks, file modes, .bin data checked once)."""
import json
import os
import stat
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, TINY, smoke_config, snakemake, tiny_config
from lnstab.config import ConfigError, load_config
from lnstab.data import load_corpus
from lnstab.io import write_text
from lnstab.study import prepare_corpus, train_grid_point
from lnstab.train import RunError, train

TEXT_A = "the quick brown fox jumps over the lazy dog. " * 200
TEXT_B = "god yzal eht revo spmuj xof nworb kciuq eht. " * 200  # the same characters, other text


def text_config(path, *extra):
    return tiny_config("data.source=text", f"data.paths=[{path}]", *extra)


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "lnstab.cli", *args], capture_output=True, text=True, **kw)


# -- 1. a changed corpus never resumes old results ---------------------------------------------
def test_changed_corpus_is_never_resumed(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT_A)
    out = tmp_path / "run"
    first = train(text_config(corpus), out, verbose=False)
    (out / "summary.json").unlink()
    corpus.write_text(TEXT_B)
    with pytest.raises(RunError, match="other data"):
        train(text_config(corpus), out, verbose=False)
    again = train(text_config(corpus), out, verbose=False, restart_stale=True)
    fresh = train(text_config(corpus), tmp_path / "fresh", verbose=False)
    assert again["final_val_loss"] == fresh["final_val_loss"] != first["final_val_loss"]
    assert (out / "superseded" / "1" / "ckpt.pt").exists()  # the old run is kept, not mixed in
    prov = json.loads((out / "provenance.json").read_text())
    import torch

    assert torch.load(out / "ckpt.pt", weights_only=False)["data_fingerprint"] == prov["corpus_fingerprint"]


def test_bin_fingerprint_is_a_content_hash(tmp_path):
    for name, tokens in (("a", [1, 2, 3, 4] * 100), ("b", [4, 3, 2, 1] * 100)):  # same size and max
        (tmp_path / name).mkdir()
        for split in ("train", "val"):
            np.asarray(tokens, np.uint16).tofile(tmp_path / name / f"{split}.bin")
    fp = [load_corpus(load_config(None, ["data.source=bin", f"data.dir={tmp_path / n}", "model.vocab_size=8"]).data).fingerprint
          for n in "ab"]
    assert fp[0] != fp[1]


@pytest.mark.slow
def test_workflow_corpus_files_are_inputs(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT_A)
    cfg = smoke_config(tmp_path, sweeps=[{"placement": ["pre"], "n_layer": [1], "dt": [1.0]}],
                       screen={"enabled": False}, wasserstein={"enabled": False},  # the corpus and the run only
                       base={"model": {"d_model": 16, "n_head": 2, "block_size": 16},
                             "data": {"source": "text", "paths": [str(corpus)]},
                             "train": {"steps": 4, "batch_size": 2, "warmup_steps": 1, "eval_interval": 2,
                                       "ckpt_interval": 2, "log_interval": 2, "eval_batches": 1},
                             "probe": {"interval": 2, "batch_size": 2, "jacobian_iters": 2}})
    res = snakemake("tables", "--cores", "2", "--configfile", str(cfg))
    assert res.returncode == 0, res.stderr[-3000:]
    runs = pd.read_csv(tmp_path / "results" / "tables" / "runs.csv")
    time.sleep(1.1)
    corpus.write_text(TEXT_B)
    dry = snakemake("tables", "-n", "--configfile", str(cfg))
    assert "rule corpus" in dry.stdout and "rule train" in dry.stdout, dry.stdout[-2000:]
    res = snakemake("tables", "--cores", "2", "--configfile", str(cfg))
    assert res.returncode == 0, res.stderr[-3000:]
    after = pd.read_csv(tmp_path / "results" / "tables" / "runs.csv")
    assert after["final_val_loss"].item() != runs["final_val_loss"].item()


# -- 2. a changed run setting retrains that run cleanly -----------------------------------------
def test_changed_setting_retrains_cleanly(tmp_path):
    meta = tmp_path / "data" / "meta.json"
    prepare_corpus({"source": "shakespeare"}, tmp_path / "data", meta, tmp_path / "baselines")
    params = {"placement": "pre", "n_layer": 1, "dt": 1.0, "weight_decay": 0.1, "lr": 0.003, "seed": 0}
    base = {"model": {"d_model": 16, "n_head": 2, "block_size": 16},
            "train": {"steps": 6, "batch_size": 2, "warmup_steps": 1, "eval_interval": 3, "ckpt_interval": 3,
                      "log_interval": 3, "eval_batches": 1},
            "probe": {"interval": 3, "batch_size": 2, "jacobian_iters": 2}}
    train_grid_point(params, base, meta, tmp_path / "run")
    base["train"]["steps"] = 8
    s = train_grid_point(params, base, meta, tmp_path / "run")
    assert s["status"] == "completed" and s["steps"] == 8
    assert (tmp_path / "run" / "superseded" / "1" / "ckpt.pt").exists()


# -- 3./4. one trainer per run folder ------------------------------------------------------------
@pytest.mark.slow
def test_second_trainer_on_a_folder_refuses_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--quiet"] + [f"--set={o}" for o in TINY] + ["--set=train.steps=100000"]
    first = subprocess.Popen([sys.executable, "-m", "lnstab.cli", *args], stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):
            if (out / "provenance.json").exists():
                break
            time.sleep(0.1)
        second = cli(*args, timeout=120)
        assert second.returncode == 2
        assert f"pid {first.pid}" in second.stderr and "in use" in second.stderr
        assert first.poll() is None  # the first trainer is untouched
    finally:
        first.kill()
        first.wait()


# -- 5. a corrupt checkpoint: one line naming the file -----------------------------------------
@pytest.mark.parametrize("damage", ["truncate", "random", "empty"])
def test_corrupt_checkpoint_names_the_file(tmp_path, damage):
    out = tmp_path / "run"
    train(tiny_config(), out, verbose=False)
    (out / "summary.json").unlink()
    ckpt = out / "ckpt.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes({"truncate": data[: len(data) // 2], "random": os.urandom(4096), "empty": b""}[damage])
    res = cli("train", "--out", str(out), "--quiet", *[f"--set={o}" for o in TINY])
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(ckpt) in lines[0] and "delete it" in lines[0], res.stderr


# -- 6. a finished run rewrites a missing or damaged output from its checkpoint ---------------
@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_missing_output_of_a_finished_run_is_rewritten(tmp_path, damage):
    out = tmp_path / "run"
    train(tiny_config(), out, verbose=False)
    original = {n: (out / n).read_bytes() for n in ("metrics.csv", "probes.csv", "bounds.csv")}
    if damage == "delete":
        (out / "metrics.csv").unlink()
    else:
        (out / "metrics.csv").write_bytes(original["metrics.csv"][:100])
    train(tiny_config(), out, verbose=False)
    assert {n: (out / n).read_bytes() for n in original} == original


# -- 7. input checks: every value range before anything is written -----------------------------
@pytest.mark.parametrize("override, message", [
    ("train.beta1=2", "train.beta1"),
    ("train.beta2=-1", "train.beta2"),
    ("train.lr=inf", "train.lr: must be a finite number"),
    ("model.dt=.inf", "model.dt: must be a finite number"),
    ("train.min_lr_ratio=5", "train.min_lr_ratio"),
    ("model=3", "model: expected a mapping"),
    ("model.dt=[1, 2", "--set model.dt=[1, 2:1:"),
])
def test_bad_values_are_config_errors(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert message in str(e.value)


def test_config_file_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  dt: 0.5\n  n_layer: [1\ntrain: {}\n")
    with pytest.raises(ConfigError, match=rf"{bad}:\d+:\d+: YAML syntax error"):
        load_config(bad)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("seed: 1 # caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(latin)


@pytest.mark.parametrize("content", [b"", b"\x01\x00\x02"])
def test_bad_bin_files_are_named(tmp_path, content):
    np.arange(300, dtype=np.uint16).tofile(tmp_path / "train.bin")
    (tmp_path / "val.bin").write_bytes(content)
    cfg = load_config(None, ["data.source=bin", f"data.dir={tmp_path}", "model.vocab_size=400"])
    with pytest.raises(ConfigError, match=str(tmp_path / "val.bin")):
        load_corpus(cfg.data)


def test_config_error_leaves_the_output_folder_untouched(tmp_path):
    out = tmp_path / "run"
    res = cli("train", "--out", str(out), "--set=model.vocab_size=10", *[f"--set={o}" for o in TINY])
    assert res.returncode == 2 and "model.vocab_size" in res.stderr and "Traceback" not in res.stderr
    assert not out.exists()


# -- 8. outputs honour the umask -----------------------------------------------------------------
def test_outputs_honour_the_umask(tmp_path):
    code = ("import os, sys; os.umask(0o022); from lnstab.io import write_text; "
            f"write_text({str(tmp_path / 'a.txt')!r}, 'x')")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    write_text(tmp_path / "b.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o666 & ~mask


# -- 9. .bin data checked once at the corpus stage ----------------------------------------------
def test_bin_corpus_stage_checks_and_records(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        prepare_corpus({"source": "bin", "dir": str(tmp_path / "missing")}, tmp_path, tmp_path / "m.json", tmp_path / "b")
    d = tmp_path / "bin"
    d.mkdir()
    np.asarray([5, 7, 9] * 200, np.uint16).tofile(d / "train.bin")
    np.asarray([7, 5, 9] * 50, np.uint16).tofile(d / "val.bin")
    with pytest.raises(ConfigError, match="model.vocab_size: 8 is too small for token id 9"):
        prepare_corpus({"source": "bin", "dir": str(d)}, tmp_path, tmp_path / "m.json", tmp_path / "b", vocab_size=8)
    meta = prepare_corpus({"source": "bin", "dir": str(d)}, tmp_path, tmp_path / "m.json", tmp_path / "b")
    assert meta["max_token"] == 9 and len(meta["fingerprint"]) == 16
    # a training job takes what the stage measured instead of scanning the files again
    cfg = load_config(None, ["data.source=bin", f"data.dir={d}", "model.vocab_size=16"])
    c = load_corpus(cfg.data, 16, {"fingerprint": meta["fingerprint"], "max_token": meta["max_token"]})
    assert c.fingerprint == meta["fingerprint"] == load_corpus(cfg.data, 16).fingerprint


# -- 11. clean targets remove only what they own -------------------------------------------------
def test_make_clean_leaves_other_studies_alone(tmp_path):
    for f in ("results/paper/runs/x/ckpt.pt", "results/extended/tables/runs.csv", "results/runs/r/ckpt.pt",
              "results/tables/runs.csv", "results/summary.md", "figures/fig1_moments.png", "figures/README.md"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("x")
    subprocess.run(["make", "-s", "-f", str(ROOT / "Makefile"), "clean"], cwd=tmp_path, check=True)
    kept = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    assert kept == {"results/paper/runs/x/ckpt.pt", "results/extended/tables/runs.csv", "figures/README.md"}


def test_a_study_run_records_its_grid_point(tmp_path):
    meta = tmp_path / "data" / "meta.json"
    prepare_corpus({"source": "shakespeare"}, tmp_path / "data", meta, tmp_path / "baselines")
    params = {"placement": "peri", "n_layer": 1, "dt": 0.5, "weight_decay": 0.0, "lr": 0.003, "seed": 3, "role": "study"}
    base = {"model": {"d_model": 16, "n_head": 2, "block_size": 16},
            "train": {"steps": 4, "batch_size": 2, "warmup_steps": 1, "eval_interval": 2, "ckpt_interval": 2,
                      "log_interval": 2, "eval_batches": 1},
            "probe": {"interval": 2, "batch_size": 2, "jacobian_iters": 2}}
    s = train_grid_point(params, base, meta, tmp_path / "run")
    assert s["grid"] == params
    from lnstab.collect import collect

    baselines = pd.read_csv(tmp_path / "baselines.csv")
    runs = collect({"x": tmp_path / "run"}, {}, baselines)["runs"]  # no study grid: read from the run
    assert runs.iloc[0][["placement", "n_layer", "dt", "seed"]].tolist() == ["peri", 1, 0.5, 3]
    with pytest.raises(ValueError, match="records grid point"):
        collect({"x": tmp_path / "run"}, {"x": {**params, "seed": 4}}, baselines)


# -- 4b. cluster file systems: no flock, or one that holds per node only -----------------------
def test_lock_falls_back_to_a_lock_file_where_flock_is_missing(tmp_path, monkeypatch, capsys):
    """Where flock fails with ENOSYS (Lustre without flock), the run folder is locked by an O_EXCL
    file holding host and pid: a second holder is refused naming the first, a file left by a dead
    process of this host is taken over, one of another host is not; LNSTAB_LOCK=file asks for it."""
    import errno
    import socket

    from lnstab import runfolder
    from lnstab.runfolder import RunError, run_lock

    def no_flock(*_):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(runfolder.fcntl, "flock", no_flock)
    out = tmp_path / "run"
    with run_lock(out):
        assert f"pid {os.getpid()} on {socket.gethostname()}" in (out / ".lock.pid").read_text()
        with pytest.raises(RunError, match=f"in use by pid {os.getpid()}"):
            with run_lock(out):
                pass
    assert not (out / ".lock.pid").exists() and "no flock" in capsys.readouterr().err
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (out / ".lock.pid").write_text(f"pid {gone.pid} on {socket.gethostname()} since 2026-01-01 00:00:00\n")
    with run_lock(out):  # a crash's leftover on this host
        assert f"pid {os.getpid()}" in (out / ".lock.pid").read_text()
    (out / ".lock.pid").write_text("pid 1 on another-node since 2026-01-01 00:00:00\n")
    monkeypatch.undo()
    monkeypatch.setenv("LNSTAB_LOCK", "file")  # flock works here, but the file lock is asked for
    with pytest.raises(RunError, match="in use by pid 1 on another-node"):
        with run_lock(out):
            pass
    monkeypatch.setenv("LNSTAB_LOCK", "nfs")
    with pytest.raises(RunError, match="LNSTAB_LOCK='nfs'"):
        with run_lock(out):
            pass


def test_the_two_lock_modes_see_each_other(tmp_path, monkeypatch):
    """A trainer with the default flock and one with LNSTAB_LOCK=file on the same folder: whichever
    comes second is refused (both modes hold the O_EXCL lock file, flock mode under its flock). A
    lock file that a flock-mode trainer left behind (killed on another node) is stale under a held
    flock and taken over; one of a file-mode trainer elsewhere is not."""
    from lnstab.runfolder import RunError, run_lock

    out = tmp_path / "run"
    for first, second in (("flock", "file"), ("file", "flock")):
        monkeypatch.setenv("LNSTAB_LOCK", first)
        with run_lock(out):
            monkeypatch.setenv("LNSTAB_LOCK", second)
            with pytest.raises(RunError, match=f"in use by pid {os.getpid()}"):
                with run_lock(out):
                    pass
        assert not (out / ".lock.pid").exists()
    monkeypatch.setenv("LNSTAB_LOCK", "flock")
    (out / ".lock.pid").write_text("pid 1 on another-node since 2026-01-01 00:00:00 (flock)\n")
    with run_lock(out):
        assert f"pid {os.getpid()}" in (out / ".lock.pid").read_text()
    (out / ".lock.pid").write_text("pid 1 on another-node since 2026-01-01 00:00:00 (file)\n")
    with pytest.raises(RunError, match="in use by pid 1 on another-node"):
        with run_lock(out):
            pass


@pytest.mark.parametrize("mode", ["flock", "file"])
def test_a_linked_or_fifo_lock_file_is_never_read(tmp_path, monkeypatch, mode):
    """A .lock.pid that is a symbolic link to another file: the refusal names the link and shows
    nothing of the file it points to; a FIFO there is refused without waiting for a writer."""
    from lnstab.runfolder import RunError, run_lock

    monkeypatch.setenv("LNSTAB_LOCK", mode)
    out, secret = tmp_path / "run", tmp_path / "credentials"
    out.mkdir()
    secret.write_text("password=hunter2\n")
    (out / ".lock.pid").symlink_to(secret)
    with pytest.raises(RunError, match="symbolic link") as e:
        with run_lock(out):
            pass
    assert "hunter2" not in str(e.value) and str(out / ".lock.pid") in str(e.value)
    (out / ".lock.pid").unlink()
    os.mkfifo(out / ".lock.pid")
    with pytest.raises(RunError, match="not a regular file"):
        with run_lock(out):
            pass
