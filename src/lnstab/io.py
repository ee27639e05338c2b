"""Atomic file output: a reader (or a crash) never sees a half-written file."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by their owner only; outputs get the usual mode under the umask
FILE_MODE = 0o666 & ~_umask()


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path, data: bytes) -> None:
    _atomic(path, lambda f: f.write(data))


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_csv(path, df: pd.DataFrame, float_format: str | None = None) -> None:
    write_text(path, df.to_csv(index=False, float_format=float_format, lineterminator="\n"))


def save_torch(path, obj) -> None:
    import torch  # here, so that table and figure jobs never load torch

    _atomic(path, lambda f: torch.save(obj, f))
