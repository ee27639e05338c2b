"""Collection: every run folder of a study read into the study's tables (lnstab.tables.COLLECTED),
with the per-run statistics of lnstab.stats and the learned status of lnstab.baselines."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .baselines import learned_status
from .grid import ID_DEFAULTS
from .stats import RUN_KEYS, loss_table, run_stats, scale_table, slope_table, tightness_table
from .tables import PARAMS


def _with_params(df: pd.DataFrame, params: dict) -> pd.DataFrame:
    df = df.copy()
    for i, k in enumerate(PARAMS):
        df.insert(i, k, params[k])
    return df


def _warmup_steps(folder: Path) -> int:
    """train.warmup_steps of the run, from the resolved config its provenance.json records."""
    path = folder / "provenance.json"
    try:
        return int(json.loads(path.read_text())["config"]["train"]["warmup_steps"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: cannot read config.train.warmup_steps ({e})") from None


def collect(run_dirs: dict[str, Path], grid: dict[str, dict], baselines: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Read every run folder; returns the tables of COLLECTED. Each run's grid point is read from
    its summary.json (the study's ``grid``, run id -> params with ``role``, for runs trained
    outside a study); ``baselines``: one row with unigram_nats and bigram_nats."""
    unigram, bigram = float(baselines["unigram_nats"].iloc[0]), float(baselines["bigram_nats"].iloc[0])
    runs, timings, metrics, probes, bounds, warmup = [], [], [], [], [], []
    for rid in sorted(run_dirs):
        folder = Path(run_dirs[rid])
        s = json.loads((folder / "summary.json").read_text())
        params = {**ID_DEFAULTS, **(s.get("grid") or grid[rid])}  # folders older than a grid key have its default
        if rid in grid:  # the role is the study's label of the run (a sweep's `demo:`), not the run's
            expected = {**ID_DEFAULTS, **grid[rid]}
            if {k: expected[k] for k in PARAMS} != {k: params[k] for k in PARAMS}:
                raise ValueError(f"{folder}/summary.json records grid point {params}, the study has {grid[rid]}")
            params["role"] = grid[rid].get("role", "study")
        learned, not_learning = learned_status(s["final_val_loss"], unigram, bigram)
        runs.append({**{k: params[k] for k in PARAMS}, "role": params.get("role", "study"),
                     "status": s["status"], "steps": s["steps"], "diverged_step": s["diverged_step"],
                     "final_train_loss": s["final_train_loss"], "final_val_loss": s["final_val_loss"],
                     "best_val_loss": s["best_val_loss"], "learned": learned, "not_learning": not_learning,
                     "n_params": s["n_params"], "bound_checks": s["bound_checks"],
                     "violations": s["bound_violations"]})
        warmup.append({**{k: params[k] for k in PARAMS}, "warmup_steps": _warmup_steps(folder)})
        timings.append({**{k: params[k] for k in PARAMS}, "wall_time_s": s["wall_time_s"],
                        "ms_per_step": s["ms_per_step"], "tokens_per_s": s["tokens_per_s"],
                        "probe_overhead": s["probe_overhead"]})
        m = pd.read_csv(folder / "metrics.csv").drop(columns=["tokens_per_s", "elapsed_s"])
        metrics.append(_with_params(m, params))
        probes.append(_with_params(pd.read_csv(folder / "probes.csv"), params))
        bounds.append(_with_params(pd.read_csv(folder / "bounds.csv"), params))
    probes_df = pd.concat(probes, ignore_index=True)
    bounds_df = pd.concat(bounds, ignore_index=True)
    stats = run_stats(probes_df, bounds_df, pd.DataFrame(warmup))
    runs_df = pd.DataFrame(runs).merge(stats, on=RUN_KEYS, how="left")
    out = {
        "runs": runs_df,
        "losses": loss_table(runs_df),
        "tightness": tightness_table(bounds_df),
        "scale": scale_table(probes_df),
        "slopes": slope_table(bounds_df),
        "timings": pd.DataFrame(timings),
        "metrics": pd.concat(metrics, ignore_index=True),
        "probes": probes_df,
        "bounds": bounds_df,
    }
    keys = {"metrics": PARAMS + ["step"], "probes": PARAMS + ["step", "sublayer", "point", "layer", "quantity"],
            "bounds": PARAMS + ["step", "sublayer", "quantity"], "scale": PARAMS + ["step"],
            "slopes": PARAMS + ["sublayer"], "tightness": ["placement", "quantity"],
            "losses": [k for k in PARAMS if k != "seed"] + ["role"]}
    return {name: df.sort_values(keys.get(name, PARAMS), kind="stable").reset_index(drop=True)
            for name, df in out.items()}
