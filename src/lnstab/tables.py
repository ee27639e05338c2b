"""The study's tables: their names and formats (declared once, read by the workflow), and how
each is written.

Every table is sorted (lnstab.collect) and written with a fixed float format, so the same runs
give the same bytes. Wall-clock numbers live in their own ``timings`` table, outside the
determinism manifest. The statistics of each run come from ``lnstab.stats``; the claims from
``lnstab.claims``.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd

from .grid import GRID_KEYS
from .io import write_bytes, write_csv, write_text

PARAMS = list(GRID_KEYS)  # placement, n_layer, dt, weight_decay, lr, seed, init_scale, fold_dt
FLOAT_FORMAT = "%.6g"

# every table of a study: name -> formats, and the columns its Markdown / LaTeX versions show
# (long tables are CSV only; wide ones show a page-width subset)
TABLES = {
    "baselines": ("csv", "md"),
    "runs": ("csv", "md", "tex"),
    "losses": ("csv", "md", "tex"),
    "claims": ("csv", "md", "tex"),
    "claims_reference": ("csv", "md"),  # a growth claim's verdict from each reference step
    "demonstrations": ("csv", "md"),
    "software_checks": ("csv", "md"),
    "dt_ablation": ("csv", "md"),
    "tightness": ("csv", "md", "tex"),
    "scale": ("csv",),
    "slopes": ("csv",),
    "metrics": ("csv.gz",),  # the long tables: gzipped, so that the figures' data are committed
    "probes": ("csv.gz",),
    "bounds": ("csv.gz",),
    "timings": ("csv",),
    "wasserstein": ("csv", "md"),
    "screen_sublayers": ("csv",),
    "screen_verdicts": ("csv", "md"),
    "inspected": ("csv",),
    "inspected_models": ("csv", "md"),
    "inspected_real": ("csv", "md"),  # the real models: one row each (the summary's "Real models")
    "inspected_depth": ("csv", "md"),
    "inspected_stream": ("csv",),
    "inspected_gains": ("csv",),
    "inspected_quantisation": ("csv", "md"),
}
INSPECTION_TABLES = ("inspected", "inspected_models", "inspected_real", "inspected_depth", "inspected_stream",
                     "inspected_gains", "inspected_quantisation")
SHOWN_COLUMNS = {
    "inspected_models": ["name", "model_type", "placement", "norm", "n_layer", "n_params", "finite", "loss",
                         "bounds", "bound_checks", "bound_violations", "max_ratio", "dim_max_over_median",
                         "roundtrip_max_abs_diff"],
    "runs": PARAMS + ["role", "status", "final_val_loss", "learned", "scale_growth_final", "shape_ratio",
                      "adjoint_ratio", "violations"],
    "losses": [k for k in PARAMS if k != "seed"] + ["role", "seeds", "val_loss_mean", "val_loss_std", "learned"],
    "claims": ["claim", "condition", "verdict", "effect", "ci_low", "ci_high", "seeds", "holds", "checked"],
    "demonstrations": ["placement", "n_layer", "dt", "lr", "seed", "final_val_loss", "adjoint_ratio",
                       "data_over_entry_var", "vanishing", "collapsed", "demonstrated"],
    "software_checks": ["check", "result", "runs_ok", "runs", "checks", "violations", "numbers"],
    "wasserstein": [k for k in PARAMS if k not in ("weight_decay",)] + ["learned", "perturbation", "method",
                                                                      "w_in", "w_out", "ratio", "rms_gain", "worst_gain"],
    "screen_verdicts": ["architecture", "role", "state", "forward", "backward", "depth_exponent", "step_factor", "adjoint_step_factor", "weight_homogeneity",
                        "data_over_entry_var", "within_over_entry_var", "adjoint_ratio", "final_val_loss", "learned"],
}
JUDGED = ("claims", "claims_reference", "demonstrations", "software_checks", "dt_ablation")  # by the claims rule
COLLECTED = ("runs", "losses", "tightness", "scale", "slopes", "metrics", "probes", "bounds", "timings")


def _shown(v):
    if v is None:  # not applicable (e.g. whether an untrained state learned)
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "" if np.isnan(v) else f"{v:.4g}"
    return v


def write_table(df: pd.DataFrame, stem: str | Path, formats=None) -> list[Path]:
    """CSV (fixed float format), and where TABLES says so Markdown and LaTeX with the columns of
    SHOWN_COLUMNS (missing numbers shown blank, never "nan")."""
    stem = Path(stem)
    formats = formats or TABLES.get(stem.name, ("csv",))
    paths = []
    if "csv" in formats:
        write_csv(stem.with_suffix(".csv"), df, float_format=FLOAT_FORMAT)
        paths.append(stem.with_suffix(".csv"))
    if "csv.gz" in formats:  # no time stamp or file name in the gzip header: the same rows, the same bytes
        text = df.to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
        write_bytes(stem.with_suffix(".csv.gz"), gzip.compress(text.encode(), compresslevel=9, mtime=0))
        paths.append(stem.with_suffix(".csv.gz"))
    cols = [c for c in SHOWN_COLUMNS.get(stem.name, df.columns) if c in df.columns]
    shown = df[cols].astype(object).map(_shown)
    if "md" in formats:
        write_text(stem.with_suffix(".md"), shown.to_markdown(index=False) + "\n")
        paths.append(stem.with_suffix(".md"))
    if "tex" in formats:
        write_text(stem.with_suffix(".tex"), shown.to_latex(index=False, escape=True))
        paths.append(stem.with_suffix(".tex"))
    return paths


def data_file(name: str) -> str:
    """The file of a table that programs read (its CSV, plain or gzipped)."""
    return f"{name}.{TABLES[name][0]}"


def table_files(results: str, names=None) -> list[str]:
    """Every file of the named tables (all of TABLES by default) under results/tables."""
    return [f"{results}/tables/{n}.{ext}" for n in (names or TABLES) for ext in TABLES[n]]
