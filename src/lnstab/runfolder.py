"""A run's folder: its files and their columns, the checkpoint, the lock, the summary and the
provenance. Everything here is about what a run leaves on disk; the training loop is lnstab.train."""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import __version__
from .config import RunConfig
from .hardware import mfu
from .io import write_csv, write_json

class RunError(RuntimeError):
    """A run folder cannot be used as it is (locked, unreadable or stale checkpoint); the message
    names the file and what to do."""


class StaleCheckpoint(RunError):
    """The checkpoint was written with another config or other data."""


METRIC_COLUMNS = ["step", "train_loss", "val_loss", "learning_rate", "grad_norm", "tokens_per_s", "elapsed_s"]
PROBE_COLUMNS = ["step", "point", "layer", "sublayer", "quantity", "value"]
BOUND_COLUMNS = ["step", "point", "layer", "sublayer", "quantity", "measured", "lower", "bound",
                 "ratio", "kind", "violation"]
# columns that measure time, not the model: excluded from determinism comparisons
TIMING_COLUMNS = ("tokens_per_s", "elapsed_s")


@dataclass
class RunState:
    """What a run has done so far: with the weights and the RNG states, all that a checkpoint holds."""
    step: int = 0
    status: str = "running"  # running | completed | diverged
    diverged_step: int | None = None
    metrics: list[dict] = field(default_factory=list)
    probe_rows: list[dict] = field(default_factory=list)
    bound_rows: list[dict] = field(default_factory=list)
    probed: list[int] = field(default_factory=list)
    train_time: float = 0.0  # seconds in training steps (excludes probes and evaluation)
    probe_time: float = 0.0
    eval_time: float = 0.0


def read_checkpoint(path: Path) -> dict:
    """The checkpoint at ``path``, or a RunError naming it (truncated, random, empty, foreign)."""
    try:  # on the CPU: RNG states must stay CPU tensors; load_state_dict moves the rest to the device
        ck = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(ck, dict) or "model" not in ck or "config" not in ck:
            raise ValueError("not an lnstab checkpoint")
        return ck
    except Exception as e:
        cause = str(e).splitlines()[0] if str(e) else ""
        raise RunError(f"{path}: unreadable checkpoint ({type(e).__name__}: {cause}); "
                       "delete it (or move it aside) to train this run again from step 0") from None


def run_tables(state: RunState) -> dict[str, pd.DataFrame]:
    return {"metrics.csv": pd.DataFrame(state.metrics, columns=METRIC_COLUMNS),
            "probes.csv": pd.DataFrame(state.probe_rows, columns=PROBE_COLUMNS),
            "bounds.csv": pd.DataFrame(state.bound_rows, columns=BOUND_COLUMNS)}


def repair_outputs(out: Path, tables: dict[str, pd.DataFrame], summary) -> list[str]:
    """Rewrite every table that is missing or differs from ``tables`` (deleted, truncated,
    edited), and summary.json (from the callable ``summary``) if it is missing or unreadable.
    Returns the names rewritten."""
    fixed = []
    for name, df in tables.items():
        path = out / name
        if not path.exists() or path.read_text() != df.to_csv(index=False, lineterminator="\n"):
            write_csv(path, df)
            fixed.append(name)
    try:
        json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        write_json(out / "summary.json", summary())
        fixed.append("summary.json")
    return fixed


def run_summary(state: RunState, cfg: RunConfig, model, device: torch.device, resumed_from: int | None,
                grid: dict | None, world_size: int = 1) -> dict:
    """summary.json of a run: status, losses, checks, timings, throughput."""
    st = state
    m = pd.DataFrame(st.metrics, columns=METRIC_COLUMNS)
    val = m["val_loss"].dropna()
    steps_done = max(1, len(m))
    total = st.train_time + st.probe_time + st.eval_time
    b = pd.DataFrame(st.bound_rows, columns=BOUND_COLUMNS)
    summary = {
        "status": st.status,
        "steps": st.step,
        "steps_planned": cfg.train.steps,
        "diverged_step": st.diverged_step,
        "final_train_loss": float(m["train_loss"].iloc[-1]) if len(m) else float("nan"),
        "final_val_loss": float(val.iloc[-1]) if len(val) else float("nan"),
        "best_val_loss": float(val.min()) if len(val) else float("nan"),
        "bound_violations": int(b["violation"].sum()) if len(b) else 0,
        # only rows that can fail count (bounds.BOUND_KINDS): k >= 1, not an LN identity
        "bound_checks": int((b["kind"] == "check").sum()) if len(b) else 0,
        "n_params": model.num_params(),
        "wall_time_s": total,
        "train_time_s": st.train_time,
        "probe_time_s": st.probe_time,
        "eval_time_s": st.eval_time,
        "ms_per_step": 1000 * st.train_time / steps_done,
        "probe_overhead": st.probe_time / total if total else 0.0,
        "tokens_per_s": steps_done * cfg.train.batch_size * cfg.model.block_size / max(st.train_time, 1e-9),
        "resumed_from_step": resumed_from,
    }
    if grid is not None:
        summary["grid"] = grid
    summary["model_tflops"] = model.flops_per_token() * summary["tokens_per_s"] / 1e12
    summary["world_size"] = world_size
    summary["mfu"] = mfu(summary["model_tflops"] / world_size, device, cfg.train.precision)  # per GPU
    # JSON has no NaN: a missing number (no evaluation, diverged loss) is null
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(cfg: RunConfig, device: torch.device, corpus, world_size: int = 1) -> dict:
    info = {
        "config": cfg.to_dict(),
        "lnstab_version": __version__,
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "device": str(device),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "world_size": world_size,  # processes (torchrun ranks) that trained the run
        "corpus_fingerprint": corpus.fingerprint,
        "vocab_size": corpus.vocab_size,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def _diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(a) | set(b)):
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            keys += _diff_keys(a[k], b[k], f"{prefix}{k}.")
        elif a.get(k) != b.get(k):
            keys.append(f"{prefix}{k}: {a.get(k)!r} -> {b.get(k)!r}")
    return keys


@contextlib.contextmanager
def run_lock(out: Path):
    """Hold ``out/.lock`` for the whole run: a second trainer on the same folder stops with a
    message naming the holder instead of writing into the same files."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / ".lock"
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise RunError(f"{out} is in use by {holder}; wait for it to finish or stop it") from None
    try:
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        yield
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


RUN_FILES = ("ckpt.pt", "metrics.csv", "probes.csv", "bounds.csv", "summary.json", "provenance.json")


def move_aside(out: Path) -> Path:
    """Move a run's files into out/superseded/<n>/ (nothing is deleted)."""
    n = 1
    while (out / "superseded" / str(n)).exists():
        n += 1
    dest = out / "superseded" / str(n)
    dest.mkdir(parents=True)
    for name in RUN_FILES:
        if (out / name).exists():
            shutil.move(str(out / name), dest / name)
    return dest
