import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lnstab.config import load_config

# A model small enough that a training run takes about a second on one CPU core.
TINY = [
    "model.n_layer=2", "model.d_model=32", "model.n_head=4", "model.block_size=32",
    "train.batch_size=4", "train.steps=30", "train.warmup_steps=3", "train.eval_interval=10",
    "train.eval_batches=2", "train.log_interval=10", "train.ckpt_interval=10",
    "probe.interval=10", "probe.batch_size=2", "probe.jacobian_iters=5",
]


@pytest.fixture
def tiny_overrides():
    return list(TINY)


def tiny_config(*extra):
    return load_config(None, TINY + list(extra))


ROOT = Path(__file__).resolve().parents[1]
VERDICTS = {"supported", "refuted", "mixed", "undecided", "untested"}


def snakemake(*args, cwd=ROOT, timeout=900):
    """Run Snakemake from the repository root (the default profile applies unless another is named)."""
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def smoke_config(tmp_path, **changes) -> Path:
    """config/smoke.yaml with its outputs under tmp_path (and any top-level key replaced)."""
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    cfg["results"] = str(tmp_path / "results")
    cfg["figures"] = str(tmp_path / "figures")
    if "sweeps" in changes:  # the round trip's run is one of smoke.yaml's own grid
        # smoke.yaml's inspect section kept (models: [], no real model) with no round trip:
        # None, since an empty mapping would merge with config.yaml's
        cfg["inspect"] = {**cfg.get("inspect", {}), "roundtrip": None}
    cfg.update(changes)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="session")
def smoke_local(tmp_path_factory):
    """The smoke study run once locally, shared by the workflow and SLURM tests, and by the
    pytest-xdist workers of one run (the first to need it builds it under a lock)."""
    import fcntl

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the workers' folders share this run's parent
        root = root.parent
    tmp_path = root / "smoke_local"
    with open(root / "smoke_local.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cfg_path = smoke_config(tmp_path)
        if not (tmp_path / "built").exists():
            res = snakemake("all", "--cores", "2", "--configfile", str(cfg_path))
            assert res.returncode == 0, res.stderr[-5000:]
            (tmp_path / "built").touch()
    return tmp_path, cfg_path


# the files of the longest tests first: with one file per xdist worker (pyproject.toml), the
# workers then finish together instead of one waiting out the SLURM tests alone
LONGEST_FIRST = ("test_slurm.py", "test_tampering.py", "test_workflow.py", "test_pretrained.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order within a file kept
