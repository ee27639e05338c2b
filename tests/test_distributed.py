"""Paper-scale training mechanics: gradient accumulation, data parallelism on torch.distributed,
activation checkpointing and stopping on a scheduler's signal. Each must leave the training
itself unchanged: the same config gives the same losses however the step is computed."""
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from lnstab.train import PREEMPTED_EXIT, train

from conftest import ROOT, TINY, tiny_config
from test_train import assert_same_run

LOSSES = ("train_loss", "val_loss", "grad_norm")


def max_relative_difference(a, b, columns=LOSSES) -> float:
    """Largest |a - b| / |a| over every logged value of ``columns`` (same steps, same NaNs)."""
    ma, mb = (pd.read_csv(f / "metrics.csv") for f in (a, b))
    assert list(ma["step"]) == list(mb["step"])
    worst = 0.0
    for c in columns:
        x, y = ma[c].to_numpy(), mb[c].to_numpy()
        assert (np.isnan(x) == np.isnan(y)).all(), c
        x, y = x[~np.isnan(x)], y[~np.isnan(y)]
        worst = max(worst, float(np.max(np.abs(x - y) / np.abs(x))))
    return worst


def lnstab(*args, nproc=1, **kw):
    """``lnstab ARGS`` as a command, on ``nproc`` processes (``lnstab train --processes``, which the
    README offers)."""
    if nproc > 1:
        args = (args[0], "--processes", str(nproc), *args[1:])
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "lnstab", *args], capture_output=True, text=True, env=env, **kw)


def sets(*overrides):
    return [a for o in (*TINY, *overrides) for a in ("--set", o)]


@pytest.mark.parametrize("accum", [2, 4])
def test_gradient_accumulation_matches_one_batch(tmp_path, accum):
    train(tiny_config("train.batch_size=8"), tmp_path / "one", verbose=False)
    train(tiny_config("train.batch_size=8", f"train.grad_accum={accum}"), tmp_path / "acc", verbose=False)
    diff = max_relative_difference(tmp_path / "one", tmp_path / "acc")
    assert diff < 1e-5
    assert diff > 0 or accum == 1  # the micro-batches really were summed separately


def test_batch_that_does_not_split_is_a_config_error():
    from lnstab.config import ConfigError

    with pytest.raises(ConfigError, match="train.batch_size"):
        tiny_config("train.batch_size=6", "train.grad_accum=4")


def test_activation_checkpointing_gives_equal_losses(tmp_path):
    train(tiny_config(), tmp_path / "off", verbose=False)
    train(tiny_config("train.activation_checkpointing=true"), tmp_path / "on", verbose=False)
    assert max_relative_difference(tmp_path / "off", tmp_path / "on") < 1e-6


def test_activation_checkpointing_recomputes(monkeypatch):
    """The flag really routes the sub-layers through torch.utils.checkpoint."""
    import lnstab.model as model_module
    from lnstab.model import GPT

    calls = []
    real = model_module.checkpoint
    monkeypatch.setattr(model_module, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = tiny_config().model
    cfg.vocab_size = 50
    m = GPT(cfg)
    import torch

    idx = torch.randint(50, (2, 8))
    m(idx, idx)[1].backward()
    assert calls == []
    m.activation_checkpointing = True
    m(idx, idx)[1].backward()
    assert len(calls) == 2 * cfg.n_layer


@pytest.mark.slow
def test_two_ranks_match_one_process_and_repeat_exactly(tmp_path):
    """torchrun with 2 gloo ranks on the CPU: the same global batch split over the ranks."""
    args = sets("train.batch_size=8")
    one = lnstab("train", "--out", str(tmp_path / "one"), "--quiet", *args)
    assert one.returncode == 0, one.stderr[-3000:]
    for name in ("two_a", "two_b"):
        res = lnstab("train", "--out", str(tmp_path / name), "--quiet", *args, nproc=2, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
    assert max_relative_difference(tmp_path / "one", tmp_path / "two_a") < 1e-5
    assert_same_run(tmp_path / "two_a", tmp_path / "two_b")
    prov = json.loads((tmp_path / "two_a" / "provenance.json").read_text())
    assert prov["world_size"] == 2
    # rank 0 alone writes: the folder holds one run's files, nothing per rank
    assert sorted(p.name for p in (tmp_path / "two_a").iterdir() if not p.name.startswith(".")) == sorted(
        ["metrics.csv", "probes.csv", "bounds.csv", "summary.json", "provenance.json", "ckpt.pt"])


def start_and_stop(folder, args, at_step: int, sig=signal.SIGUSR1, processes: int = 1):
    """Start ``lnstab train``, send ``sig`` once it reports ``at_step``; (exit status, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lnstab", "train", "--out", str(folder), "--processes",
                             str(processes), *args],
                            stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if f"step {at_step}/" in line:
            proc.send_signal(sig)
            break
    rest = proc.communicate(timeout=120)[1]
    return proc.returncode, "".join(lines) + rest


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGTERM])
def test_stop_signal_checkpoints_and_the_retry_loses_nothing(tmp_path, sig):
    """SLURM's warning signal (profiles/slurm) or its SIGTERM mid-run: a checkpoint of the step
    just done, exit status 3, and the resumed run equals one never stopped, on one process or two."""
    args = sets("train.steps=200", "train.ckpt_interval=0", "train.log_interval=5", "train.batch_size=8")
    train(tiny_config("train.steps=200", "train.ckpt_interval=0", "train.batch_size=8"), tmp_path / "whole",
          verbose=False)
    code, err = start_and_stop(tmp_path / "stopped", args, at_step=20, sig=sig)
    assert code == PREEMPTED_EXIT, err[-3000:]
    assert "the same command resumes" in err
    import torch

    step = torch.load(tmp_path / "stopped" / "ckpt.pt", weights_only=False)["step"]
    assert 20 <= step < 200  # the steps done before the signal are kept (no checkpoint was due)
    assert not (tmp_path / "stopped" / "summary.json").exists()
    shutil.copytree(tmp_path / "stopped", tmp_path / "stopped_2")
    res = lnstab("train", "--out", str(tmp_path / "stopped"), "--quiet", *args)
    assert res.returncode == 0, res.stderr[-3000:]
    assert_same_run(tmp_path / "whole", tmp_path / "stopped")
    if sig == signal.SIGUSR1:  # the same checkpoint resumed on 2 ranks
        res = lnstab("train", "--out", str(tmp_path / "stopped_2"), "--quiet", *args, nproc=2, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        # two ranks average two half-batch gradients: the same training up to rounding, which 180
        # steps amplify. The floor: what a change of rounding alone (the explicit attention instead
        # of the fused kernel) does to the same one-process training on this machine
        train(tiny_config("train.steps=200", "train.ckpt_interval=0", "train.batch_size=8",
                          "model.fused_attention=false"), tmp_path / "rounding", verbose=False)
        floor = max_relative_difference(tmp_path / "whole", tmp_path / "rounding")
        assert max_relative_difference(tmp_path / "whole", tmp_path / "stopped_2") <= max(1e-5, 10 * floor), floor
        assert json.loads((tmp_path / "stopped_2" / "summary.json").read_text())["resumed_from_step"] == step


@pytest.mark.slow
def test_a_stop_reaches_every_rank_of_lnstab_train_processes(tmp_path):
    """``lnstab train --processes 2`` (what the README offers for several GPUs, in place of torchrun,
    whose stop ends in a traceback and exit 1): SIGTERM to the command checkpoints the step reached
    and exits 3 with one line; the same command resumes and completes."""
    args = sets("train.steps=200", "train.ckpt_interval=0", "train.log_interval=5", "train.batch_size=8")
    code, err = start_and_stop(tmp_path / "run", args, at_step=20, sig=signal.SIGTERM, processes=2)
    assert code == PREEMPTED_EXIT, err[-3000:]
    assert "Traceback" not in err and "the same command resumes" in err, err[-3000:]
    import torch

    assert 20 <= torch.load(tmp_path / "run" / "ckpt.pt", weights_only=False)["step"] < 200
    res = lnstab("train", "--out", str(tmp_path / "run"), "--quiet", *args, nproc=2, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "provenance.json").read_text())["world_size"] == 2
