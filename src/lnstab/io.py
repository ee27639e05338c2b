"""Atomic file output: a reader (or a crash) never sees a half-written file; and tables read back
with any damage named."""
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


def read_table(path) -> pd.DataFrame:
    """A table the workflow wrote (CSV, or .csv.gz), read back. Damage is one ValueError naming the
    file, never a table drawn from it: unreadable (a truncated .gz, not UTF-8, not CSV), cut short
    (a plain CSV whose last row has no line end: every writer here ends rows with one), or a cell
    that is not a number in a column whose other cells are numbers."""
    path = Path(path)
    try:
        df = pd.read_csv(path)
        if path.suffix == ".csv" and path.stat().st_size:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    raise ValueError("its last row has no line end: cut short?")
    except FileNotFoundError:
        raise
    except Exception as e:  # EOFError, BadGzipFile, ParserError, UnicodeDecodeError, EmptyDataError, ...
        cause = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{path}: not a readable table ({cause[:200]}); rebuild it (the workflow, or git "
                         "checkout for a committed one)") from None
    texts = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    for col in texts:
        values = df[col].dropna()
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.notna().any() and numbers.isna().any():
            row = numbers.index[numbers.isna()][0]
            raise ValueError(f"{path}: row {row + 2}, column {col!r}: {values[row]!r} is not a number, in a column "
                             "of numbers; rebuild the table")
    return df
