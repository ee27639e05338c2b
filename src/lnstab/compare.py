"""``lnstab compare A B``: two results of one study, compared the way a reviewer on another CPU
needs it (README: "Byte for byte, and when").

Tables are byte-identical only on a CPU of the same capability; on another one the last bits of
the numbers move, and what must hold is that the conclusions do not. So, per table present in
both: the same shape, the same text once the numbers inside it are masked (names, verdicts,
statuses, kinds), NaN in the same cells, and the largest relative difference of the numbers,
reported with its column. Per claim of claims.csv: the same verdict, and each side's effect
inside the other's interval over seeds. The exit status is 1 where a verdict, a shape, a text
or a NaN pattern differs, or where a number differs by more than ``rtol`` when one is given.

A and B are results folders (holding tables/) or tables folders; B may be ``git:REF``: the
files of A's folder as committed at REF (``lnstab compare results git:HEAD`` after a rerun).
"""
from __future__ import annotations

import gzip
import io
import math
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .runfolder import TIMING_COLUMNS

NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
# wall-clock tables: they differ between any two runs
SKIPPED = ("timings.csv",)


@dataclass
class TableComparison:
    name: str
    rows: int = 0
    max_rel: float = 0.0
    column: str = ""
    problems: list[str] = field(default_factory=list)


def tables_folder(path: str | Path) -> Path:
    path = Path(path)
    return path / "tables" if (path / "tables").is_dir() else path


class Source:
    """The tables of a folder, or of a folder as committed at a git ref."""

    def __init__(self, spec: str, like: Path | None = None):
        self.spec = spec
        if spec.startswith("git:"):
            if like is None:
                raise ValueError("git:REF compares with the first folder's files as committed: give a folder first")
            self.ref, self.folder = spec[4:], like
            try:
                listing = subprocess.run(["git", "ls-tree", "-r", "--name-only", self.ref, "--", str(like)],
                                         capture_output=True, text=True, check=True).stdout.split()
            except (OSError, subprocess.CalledProcessError) as e:
                raise ValueError(f"{spec}: not a git ref holding {like} ({getattr(e, 'stderr', '') or e})") from None
            self.names = sorted(Path(p).name for p in listing)
        else:
            self.ref, self.folder = None, tables_folder(spec)
            if not self.folder.is_dir():
                raise ValueError(f"{spec}: not a folder of tables")
            self.names = sorted(p.name for p in self.folder.iterdir() if p.is_file())

    def read(self, name: str) -> pd.DataFrame:
        if self.ref is None:
            from .io import read_table

            return read_table(self.folder / name)
        data = subprocess.run(["git", "show", f"{self.ref}:{self.folder / name}"], capture_output=True,
                              check=True).stdout
        return pd.read_csv(io.BytesIO(gzip.decompress(data) if name.endswith(".gz") else data))


def _masked(values: pd.Series) -> pd.Series:
    return values.astype(object).map(lambda s: NUMBER.sub("#", str(s)))


def compare_table(name: str, a: pd.DataFrame, b: pd.DataFrame) -> TableComparison:
    out = TableComparison(name, rows=len(a))
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        out.problems.append(f"shape differs: {len(a)} x {len(a.columns)} against {len(b)} x {len(b.columns)}"
                            + ("" if list(a.columns) == list(b.columns) else
                               f" (columns only on one side: {sorted(set(a.columns) ^ set(b.columns))})"))
        return out
    for col in a.columns:
        if col in TIMING_COLUMNS:
            continue
        x, y = a[col], b[col]
        if (x.isna() != y.isna()).any():
            row = int(np.flatnonzero((x.isna() != y.isna()).to_numpy())[0])
            out.problems.append(f"column {col!r}: missing on one side only (row {row + 2})")
            continue
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y) \
                and not pd.api.types.is_bool_dtype(x):
            u, v = x.to_numpy(float), y.to_numpy(float)
            both = np.isfinite(u) & np.isfinite(v)
            if (np.isfinite(u) != np.isfinite(v)).any() or not np.array_equal(u[~both], v[~both], equal_nan=True):
                out.problems.append(f"column {col!r}: an infinity on one side only")
            scale = np.maximum(np.abs(u[both]), np.abs(v[both]))
            rel = np.where(scale > 0, np.abs(u[both] - v[both]) / np.where(scale > 0, scale, 1), 0.0)
            if rel.size and rel.max() > out.max_rel:
                out.max_rel, out.column = float(rel.max()), col
        else:
            differ = (_masked(x) != _masked(y)).to_numpy()
            if differ.any():
                row = int(np.flatnonzero(differ)[0])
                out.problems.append(f"column {col!r}, row {row + 2}: {x.iloc[row]!r} against {y.iloc[row]!r}")
    return out


def compare_claims(a: pd.DataFrame, b: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(lines, problems): per claim and condition, the verdicts and whether each effect lies in
    the other side's interval over seeds."""
    key = ["claim", "condition"] if "condition" in a.columns else ["claim"]
    left, right = a.set_index(key), b.set_index(key)
    lines, problems = [], []
    for k in left.index.union(right.index):
        label = " ".join(map(str, k if isinstance(k, tuple) else (k,)))
        if k not in left.index or k not in right.index:
            problems.append(f"{label}: on one side only")
            continue
        p, q = left.loc[k], right.loc[k]
        same = p["verdict"] == q["verdict"]
        inside = all(not math.isfinite(e) or (lo <= e <= hi) for e, lo, hi in (
            (q["effect"], p["ci_low"], p["ci_high"]), (p["effect"], q["ci_low"], q["ci_high"]))
            if not (math.isnan(lo) or math.isnan(hi)))
        lines.append(f"{label}: {p['verdict']}" + ("" if same else f" against {q['verdict']}")
                     + (f"; effect {p['effect']:.4g} against {q['effect']:.4g}" if math.isfinite(p["effect"]) else "")
                     + ("" if inside else " (an effect outside the other's interval)"))
        if not same:
            problems.append(f"{label}: verdict {p['verdict']} against {q['verdict']}")
    return lines, problems


def compare(a_spec: str, b_spec: str, rtol: float | None = None, say=print) -> int:
    """Print the comparison of two results; the exit status (module docstring)."""
    a = Source(a_spec)
    b = Source(b_spec, like=a.folder)
    names = [n for n in a.names if n in b.names and n.endswith((".csv", ".csv.gz")) and n not in SKIPPED]
    only = sorted(set(n for n in a.names + b.names if n.endswith((".csv", ".csv.gz")) and n not in SKIPPED)
                  - set(names))
    if not names:
        raise ValueError(f"{a_spec} and {b_spec} have no table in common")
    failed = []
    for name in names:
        c = compare_table(name, a.read(name), b.read(name))
        too_far = rtol is not None and c.max_rel > rtol
        status = "; ".join(c.problems) if c.problems else (
            "equal" if c.max_rel == 0 else f"numbers within {c.max_rel:.2g} relative (largest in {c.column!r})")
        say(f"{name}: {c.rows} rows, {status}" + (f"; above --rtol {rtol:g}" if too_far else ""))
        if c.problems or too_far:
            failed.append(name)
    if "claims.csv" in names:
        lines, problems = compare_claims(a.read("claims.csv"), b.read("claims.csv"))
        say("claims:")
        for line in lines:
            say(f"  {line}")
        failed += problems
    if only:
        say(f"on one side only (not compared): {', '.join(only)}")
    say(f"{'SAME CONCLUSIONS' if not failed else 'DIFFERENT'}: {a_spec} against {b_spec}"
        + (f" ({len(failed)} difference(s): {', '.join(failed[:5])})" if failed else ""))
    return 1 if failed else 0
