"""A run's folder: its files and their columns, the checkpoint, the lock, the summary and the
provenance. Everything here is about what a run leaves on disk; the training loop is lnstab.train."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import platform
import shutil
import socket
import stat
import subprocess
import sys
import time
import zipfile
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
RUN_FILES = ("ckpt.pt", "metrics.csv", "probes.csv", "bounds.csv", "summary.json", "provenance.json")
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
    # one entry per process that trained part of the run (lnstab.runfolder.segment): a resumed run
    # says which steps ran where, on how many processes, with which code
    segments: list[dict] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)  # the machine and software of the latest segment
    summary: dict | None = None  # summary.json of a finished run, as written: a hand edit is rewritten


def refuse_links(out: Path) -> None:
    """A run writes only its own files: a symbolic link where one belongs would redirect a write
    (or the lock's truncation) outside the folder, and anything but a regular file there (a FIFO
    would block the reader forever, a folder cannot be read as a file) is refused before it is opened."""
    for name in RUN_FILES + (".lock",):
        path = out / name
        try:
            mode = os.lstat(path).st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as e:  # a name too long for the file system, a folder without permission
            raise RunError(f"{out}: cannot be a run folder ({e.strerror})") from None
        if stat.S_ISLNK(mode):
            raise RunError(f"{path} is a symbolic link; a run folder holds its own files: "
                           "remove the link (or use another output folder)")
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, socket or device)"
            raise RunError(f"{path} is {kind}; a run folder holds its own files: remove it "
                           "(or use another output folder)")


def read_checkpoint(path: Path) -> dict:
    """The checkpoint at ``path``, or a RunError naming it (truncated, random, empty, damaged,
    foreign). Every record's CRC-32 is verified (torch.load does not), and the file is unpickled
    with weights_only: a planted file cannot run code."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
        if damaged is not None:
            raise ValueError(f"record {damaged} fails its CRC-32 check (damaged on disk)")
        # on the CPU: RNG states must stay CPU tensors; load_state_dict moves the rest to the device.
        # Checkpoints of lnstab before 0.3 hold numpy arrays and scalars: rebuilding those runs no code
        with torch.serialization.safe_globals(LEGACY_NUMPY):
            ck = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ck, dict) or "model" not in ck or "config" not in ck:
            raise ValueError("not an lnstab checkpoint")
        return ck
    except Exception as e:
        cause = str(e).splitlines()[0] if str(e) else ""
        raise RunError(f"{path}: unreadable checkpoint ({type(e).__name__}: {cause}); "
                       "delete it (or move it aside) to train this run again from step 0") from None


LEGACY_NUMPY = [np.ndarray, np.dtype, np._core.multiarray._reconstruct, np._core.multiarray.scalar,
                type(np.dtype(np.uint32)), type(np.dtype(np.float64))]


def numpy_rng_state() -> tuple:
    """numpy's global RNG state with its key array as a tensor (weights_only loads it)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)


def set_numpy_rng_state(state: tuple) -> None:
    name, keys, pos, has_gauss, gauss = state
    keys = keys if isinstance(keys, np.ndarray) else keys.numpy()  # an array in checkpoints before 0.3
    np.random.set_state((name, keys.astype(np.uint32), pos, has_gauss, gauss))


def run_tables(state: RunState) -> dict[str, pd.DataFrame]:
    return {"metrics.csv": pd.DataFrame(state.metrics, columns=METRIC_COLUMNS),
            "probes.csv": pd.DataFrame(state.probe_rows, columns=PROBE_COLUMNS),
            "bounds.csv": pd.DataFrame(state.bound_rows, columns=BOUND_COLUMNS)}


def _json_or_none(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def repair_outputs(out: Path, tables: dict[str, pd.DataFrame], documents: dict[str, dict]) -> list[str]:
    """Rewrite every table that is missing or differs from ``tables``, and every JSON file of
    ``documents`` (summary.json, provenance.json: what the checkpoint implies) that is missing,
    unreadable or differs (deleted, truncated, edited). Returns the names rewritten."""
    fixed = []
    for name, df in tables.items():
        path = out / name
        if not path.exists() or path.read_text() != df.to_csv(index=False, lineterminator="\n"):
            write_csv(path, df)
            fixed.append(name)
    for name, doc in documents.items():
        if _json_or_none(out / name) != json.loads(json.dumps(doc, default=str)):
            write_json(out / name, doc)
            fixed.append(name)
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
        # which steps ran on how many processes with which code (provenance.json has the rest)
        "segments": [{k: seg.get(k) for k in ("from_step", "to_step", "world_size", "lnstab_version", "code_sha256",
                                             "git_commit") + (("group",) if "group" in seg else ())}
                     for seg in st.segments],
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


def code_digest() -> str:
    """sha256 of the package's own source files: the code that trains, whatever else a commit
    changed (a commit of docs or results leaves it alone; an uncommitted edit changes it)."""
    h = hashlib.sha256()
    for f in sorted(Path(__file__).parent.glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def segment(step: int, device: torch.device, world_size: int) -> dict:
    """One process's part of a run: from which step, on what, with which code (to_step is set
    at every checkpoint)."""
    return {"from_step": step, "to_step": step, "world_size": world_size, "lnstab_version": __version__,
            "code_sha256": code_digest(), "git_commit": git_commit(), "host": socket.gethostname(),
            "device": str(device)}


def same_code(a: dict, b: dict) -> bool:
    return (a["lnstab_version"], a.get("code_sha256")) == (b["lnstab_version"], b.get("code_sha256"))


# every package that writes the bytes of a run's files, tables or figures
WRITERS = ("torch", "numpy", "pandas", "matplotlib", "pillow", "tabulate", "pyyaml", "POT", "transformers")


def package_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in WRITERS:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def provenance(cfg: RunConfig, device: torch.device, corpus, world_size: int = 1) -> dict:
    """The config, machine and software of this process (provenance.json adds every segment)."""
    info = {
        "config": cfg.to_dict(),
        "lnstab_version": __version__,
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "torch": str(torch.__version__),  # a str subclass: plain, so checkpoints load weights_only
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
        "packages": package_versions(),
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


# How a run folder is locked: "flock" (default), or "file" where flock is missing (ENOSYS on a Lustre
# mount without it) or holds per node only (Lustre's localflock): an O_EXCL lock file, which every
# node sees. Both modes hold the lock file, flock mode under its flock, so that a trainer of either
# mode sees one of the other; flock falls back to the file alone when the file system refuses it.
LOCK_ENV = "LNSTAB_LOCK"
NO_FLOCK = (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL)


def _holder_text(mode: str) -> str:
    return f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')} ({mode})\n"


def read_small_regular(path: Path, limit: int = 4096) -> str:
    """The first ``limit`` bytes of a regular file, never through a symbolic link and never
    blocking on a FIFO or device: RunError naming the path otherwise (a lock or run file that is
    a link could show another file's content in a message)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        why = "a symbolic link" if e.errno == errno.ELOOP else e.strerror
        raise RunError(f"{path}: cannot be read ({why}); remove it") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RunError(f"{path}: not a regular file; remove it")
        return os.read(fd, limit).decode(errors="replace")
    finally:
        os.close(fd)


@contextlib.contextmanager
def run_lock(out: Path):
    """Hold the run folder for the whole run: a second trainer on the same folder stops with a
    message naming the holder instead of writing into the same files."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file of that name, a folder without write permission
        raise RunError(f"{out}: cannot create the run folder ({e.strerror})") from None
    mode = os.environ.get(LOCK_ENV, "flock")
    if mode not in ("flock", "file"):
        raise RunError(f"{LOCK_ENV}={mode!r}: 'flock' (default) or 'file' (an O_EXCL lock file, for "
                       "cluster file systems without a cluster-wide flock)")
    lock = _file_lock if mode == "file" else _flock
    with lock(out):
        yield


@contextlib.contextmanager
def _flock(out: Path):
    path = out / ".lock"
    try:  # never through a symbolic link: the truncation below would hit the file it points to
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
    except OSError as e:
        raise RunError(f"{path}: cannot open the run's lock ({e.strerror}); "
                       "remove it if it is a symbolic link") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunError(f"{path}: the run's lock is not a regular file; remove it")
    f = os.fdopen(fd, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read(4096).strip() or "another process"
        f.close()
        raise RunError(f"{out} is in use by {holder}; wait for it to finish or stop it") from None
    except OSError as e:
        f.close()
        if e.errno not in NO_FLOCK:
            raise
        print(f"lnstab: {out}: this file system has no flock ({e.strerror}); locking with a lock file "
              f"(set {LOCK_ENV}=file to say so, and on a mount whose flock holds per node only)",
              file=sys.stderr, flush=True)
        with _file_lock(out):
            yield
        return
    try:
        f.seek(0)
        f.truncate()
        f.write(_holder_text("flock"))
        f.flush()
        # under the flock, a lock file left by a flock-mode trainer is stale (it would hold the flock)
        with _file_lock(out, under_flock=True):
            yield
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


@contextlib.contextmanager
def _file_lock(out: Path, under_flock: bool = False):
    """out/.lock.pid created with O_EXCL (atomic on NFS v3+ and Lustre), holding host, pid and the
    lock mode; a lock left by a dead process of this host is taken over, and so is, under a held
    flock, one left by a flock-mode trainer (alive, it would hold the flock); any other is named."""
    path = out / ".lock.pid"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
            break
        except FileExistsError:
            holder = read_small_regular(path).strip()
            words = holder.split()
            host, pid = (words[3], int(words[1])) if len(words) > 3 and words[1].isdigit() else ("", 0)
            stale = (host == socket.gethostname() and pid and not _alive(pid)) or \
                (under_flock and holder.endswith("(flock)"))
            if stale:
                path.unlink(missing_ok=True)  # its process is gone: a crash left it
                continue
            raise RunError(f"{out} is in use by {holder or 'another process'} (lock file {path}); wait for it "
                           "to finish or stop it, or delete the lock file if that process is gone") from None
    else:
        raise RunError(f"{path}: could not take the lock file")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(_holder_text("flock" if under_flock else "file"))
        yield
    finally:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


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
