"""Aggregation of run folders into the study's tables, growth-law fits and the claims verdicts.

Every table is sorted and written with a fixed float format, so the same runs give the same
bytes. Wall-clock numbers live in their own ``timings`` table, outside the determinism manifest.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .grid import GRID_KEYS
from .io import write_csv, write_text

PARAMS = list(GRID_KEYS)  # placement, n_layer, dt, weight_decay, lr, seed
FLOAT_FORMAT = "%.6g"
MOMENTS = ("mean_abs", "var_entry", "var_data", "mean_norm")
LAWS = ("linear", "quadratic", "exponential")


# -- collection ------------------------------------------------------------------------------
def _with_params(df: pd.DataFrame, params: dict) -> pd.DataFrame:
    df = df.copy()
    for i, k in enumerate(PARAMS):
        df.insert(i, k, params[k])
    return df


def collect(run_dirs: dict[str, Path], grid: dict[str, dict]) -> dict[str, pd.DataFrame]:
    """Read every run folder; returns runs, timings, metrics, probes and bounds tables."""
    runs, timings, metrics, probes, bounds = [], [], [], [], []
    for rid in sorted(run_dirs):
        folder, params = Path(run_dirs[rid]), grid[rid]
        s = json.loads((folder / "summary.json").read_text())
        runs.append({**params, "status": s["status"], "steps": s["steps"],
                     "diverged_step": s["diverged_step"], "final_train_loss": s["final_train_loss"],
                     "final_val_loss": s["final_val_loss"], "best_val_loss": s["best_val_loss"],
                     "n_params": s["n_params"], "bound_checks": s["bound_checks"],
                     "violations": s["bound_violations"], "max_bound_ratio": s["max_bound_ratio"]})
        timings.append({**params, "wall_time_s": s["wall_time_s"], "ms_per_step": s["ms_per_step"],
                        "tokens_per_s": s["tokens_per_s"], "probe_overhead": s["probe_overhead"]})
        m = pd.read_csv(folder / "metrics.csv").drop(columns=["tokens_per_s", "elapsed_s"])
        metrics.append(_with_params(m, params))
        probes.append(_with_params(pd.read_csv(folder / "probes.csv"), params))
        bounds.append(_with_params(pd.read_csv(folder / "bounds.csv"), params))
    out = {
        "runs": pd.DataFrame(runs),
        "timings": pd.DataFrame(timings),
        "metrics": pd.concat(metrics, ignore_index=True),
        "probes": pd.concat(probes, ignore_index=True),
        "bounds": pd.concat(bounds, ignore_index=True),
    }
    keys = {"runs": PARAMS, "timings": PARAMS, "metrics": PARAMS + ["step"],
            "probes": PARAMS + ["step", "sublayer", "point", "layer", "quantity"],
            "bounds": PARAMS + ["step", "sublayer", "quantity"]}
    return {name: df.sort_values(keys[name], kind="stable").reset_index(drop=True) for name, df in out.items()}


def final_profiles(probes: pd.DataFrame) -> pd.DataFrame:
    """Hidden-state rows (embed/attn/mlp points) at each run's last probed step."""
    hidden = probes[probes["point"].isin(["embed", "attn", "mlp"])]
    last = hidden.groupby(PARAMS)["step"].transform("max")
    return hidden[hidden["step"] == last]


# -- growth laws -----------------------------------------------------------------------------
def fit_laws(x: np.ndarray, y: np.ndarray) -> dict[str, dict]:
    """Least-squares fits of y(x): linear a+bx, quadratic a+bx+cx^2, exponential a*exp(bx)
    (fitted on log y, residuals in y). Each with its parameters, R^2 and BIC on the residuals
    in y; the law with the smallest BIC is the selected one (BIC = n ln(RSS/n) + p ln n)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    tss = float(np.sum((y - y.mean()) ** 2))
    floor = 1e-12 * (tss + float(np.sum(y ** 2))) + 1e-300  # exact fits: no log(0)
    fits = {}
    for law, deg in (("linear", 1), ("quadratic", 2)):
        coef = np.polynomial.polynomial.polyfit(x, y, deg)
        fits[law] = {"coef": coef, "pred": np.polynomial.polynomial.polyval(x, coef), "p": deg + 1}
    if np.all(y > 0):
        b, log_a = np.polynomial.polynomial.polyfit(x, np.log(y), 1)[::-1]
        a = math.exp(log_a)
        fits["exponential"] = {"coef": np.array([a, b]), "pred": a * np.exp(b * x), "p": 2}
    for f in fits.values():
        rss = max(float(np.sum((y - f["pred"]) ** 2)), floor)
        f["r2"] = 1 - rss / tss if tss > 0 else 1.0
        f["bic"] = n * math.log(rss / n) + f["p"] * math.log(n)
    return fits


def _fit_rows(x, y, keys: dict) -> list[dict]:
    if len(x) < 4:  # three parameters need at least four points to be compared honestly
        return [{**keys, "law": "n/a", "selected": False, "a": np.nan, "b": np.nan, "c": np.nan,
                 "r2": np.nan, "bic": np.nan, "growth_factor": y[-1] / y[0] if y[0] else np.nan}]
    fits = fit_laws(x, y)
    best = min(fits, key=lambda k: fits[k]["bic"])
    rows = []
    for law in LAWS:
        if law not in fits:
            continue
        c = list(fits[law]["coef"]) + [np.nan] * (3 - len(fits[law]["coef"]))
        rows.append({**keys, "law": law, "selected": law == best, "a": c[0], "b": c[1], "c": c[2],
                     "r2": fits[law]["r2"], "bic": fits[law]["bic"],
                     "growth_factor": y[-1] / y[0] if y[0] else np.nan})
    return rows


def growth_table(probes: pd.DataFrame) -> pd.DataFrame:
    """Growth-law fits of each moment: over the sub-layer index k within each run (axis 'layer'),
    and of the final-layer moment over model depth n_layer for each placement, dt, wd, lr, seed
    (axis 'depth')."""
    prof = final_profiles(probes)
    rows = []
    for key, g in prof[prof["quantity"].isin(MOMENTS)].groupby(PARAMS + ["quantity"], sort=True):
        g = g.sort_values("sublayer")
        rows += _fit_rows(g["sublayer"].to_numpy(), g["value"].to_numpy(),
                          {**dict(zip(PARAMS + ["quantity"], key)), "axis": "layer"})
    last = prof[prof["sublayer"] == prof.groupby(PARAMS)["sublayer"].transform("max")]
    others = [k for k in PARAMS if k != "n_layer"]
    for key, g in last[last["quantity"].isin(MOMENTS)].groupby(others + ["quantity"], sort=True):
        g = g.sort_values("n_layer")
        keys = {**dict(zip(others + ["quantity"], key)), "n_layer": -1, "axis": "depth"}
        rows += _fit_rows(g["n_layer"].to_numpy(), g["value"].to_numpy(), keys)
    cols = ["axis"] + PARAMS + ["quantity", "law", "selected", "a", "b", "c", "r2", "bic", "growth_factor"]
    return pd.DataFrame(rows)[cols].sort_values(["axis"] + PARAMS + ["quantity", "law"]).reset_index(drop=True)


# -- claims ----------------------------------------------------------------------------------
def _verdict(n_hold: int, n: int) -> str:
    if n == 0:
        return "untested"
    return "supported" if n_hold == n else ("refuted" if n_hold == 0 else "mixed")


def _pairs(df: pd.DataFrame, a: str, b: str, keys: list[str], value: str):
    """Rows of placement a and b matched on keys: (keys, value_a, value_b)."""
    wide = df.pivot_table(index=keys, columns="placement", values=value, aggfunc="first")
    if a not in wide or b not in wide:
        return []
    wide = wide[[a, b]].dropna()
    return [(idx, row[a], row[b]) for idx, row in wide.iterrows()]


def claims_table(runs: pd.DataFrame, probes: pd.DataFrame, growth: pd.DataFrame) -> pd.DataFrame:
    """The paper's claims, each with a stated criterion, the numbers measured, and a verdict:
    supported (holds in every comparison), refuted (in none), mixed, or untested."""
    done = runs[runs["status"] == "completed"]
    claims = []

    def add(cid, statement, criterion, n_hold, n, measured):
        claims.append({"claim": cid, "statement": statement, "criterion": criterion,
                       "holds": n_hold, "checked": n, "measured": measured, "verdict": _verdict(n_hold, n)})

    sel = growth[(growth["axis"] == "layer") & growth["selected"] & (growth["placement"] == "peri")]
    ok_first = sel["quantity"].isin(["mean_abs", "mean_norm"]) & (
        (sel["law"] == "linear") | ((sel["law"] == "quadratic") & (sel["c"] <= 0)))
    ok_var = sel["quantity"].isin(["var_entry", "var_data"]) & sel["law"].isin(["linear", "quadratic"])
    laws = sel.groupby(["quantity", "law"]).size()
    add("peri_growth_polynomial",
        "Peri-LN: first moments grow at most linearly, variances at most quadratically over depth",
        "law selected by BIC over the layer index (linear / quadratic / exponential): first moments "
        "linear or concave quadratic, variances linear or quadratic, in every Peri-LN run",
        int(ok_first.sum() + ok_var.sum()), len(sel),
        "; ".join(f"{q} {law}: {n}" for (q, law), n in laws.items()))

    prof = final_profiles(probes)
    top = prof[prof["n_layer"] == prof["n_layer"].max()]
    ends = top[top["quantity"].isin(MOMENTS)].pivot_table(
        index=PARAMS + ["quantity"], columns="sublayer", values="value", aggfunc="first")
    gf = (ends[ends.columns.max()] / ends[0]).rename("growth").reset_index()
    pairs = _pairs(gf, "pre", "peri", [k for k in PARAMS if k != "placement"] + ["quantity"], "growth")
    add("pre_grows_faster_than_peri",
        "Pre-LN hidden states grow faster than Peri-LN at the largest depth",
        f"growth factor x^(K)/x^(0) of each moment at depth {int(top['n_layer'].max()) if len(top) else 'n/a'}: "
        "Pre-LN > Peri-LN, matched on dt, weight decay, lr, seed",
        sum(a > b for _, a, b in pairs), len(pairs),
        "; ".join(f"{k[-1]} dt={k[1]:g} wd={k[2]:g}: pre {a:.3g} vs peri {b:.3g}" for k, a, b in pairs))

    gfa = (ends[ends.columns.max()] / ends[0]).rename("growth").reset_index()
    n_hold, n, parts = 0, 0, []
    for key, g in gfa.groupby(["placement", "weight_decay", "lr", "seed", "quantity"]):
        if g["dt"].nunique() < 2:
            continue
        n += 1
        smallest = g.loc[g["dt"].idxmin()]
        hold = smallest["growth"] <= g["growth"].min()
        n_hold += bool(hold)
        parts.append(f"{key[0]} {key[-1]}: dt={smallest['dt']:g} {'least' if hold else 'not least'}")
    add("small_dt_least_growth", "The smallest residual step dt gives the least growth",
        "growth factor x^(K)/x^(0) at the largest depth is smallest at the smallest dt, "
        "per placement, weight decay, lr, seed and moment", n_hold, n, "; ".join(parts))

    grads = probes[(probes["point"] == "block") & (probes["quantity"] == "grad_norm")]
    grads = grads[grads["step"] == grads.groupby(PARAMS)["step"].transform("max")]
    grads = grads[grads["n_layer"] == grads["n_layer"].max()]
    spread = grads.groupby(PARAMS)["value"].agg(lambda v: math.log10(v.max() / v.min()) if v.min() > 0 else np.inf)
    spread = spread.rename("spread").reset_index()
    keys = [k for k in PARAMS if k != "placement"]
    pairs = [(k, a, b, other) for other in ("pre", "post") for k, a, b in _pairs(spread, "peri", other, keys, "spread")]
    add("peri_gradients_uniform",
        "Peri-LN parameter gradients are more uniform across depth than Pre-LN and Post-LN",
        "spread log10(max/min) of per-block gradient norms at the last probe, largest depth: "
        "Peri-LN < Pre-LN and < Post-LN, matched on dt, weight decay, lr, seed",
        sum(a < b for _, a, b, _ in pairs), len(pairs),
        "; ".join(f"dt={k[1]:g} wd={k[2]:g}: peri {a:.2f} vs {o} {b:.2f}" for k, a, b, o in pairs))

    n_hold, n, parts = 0, 0, []
    for key, g in done.groupby([k for k in PARAMS if k != "placement"]):
        if "peri" not in set(g["placement"]) or g["placement"].nunique() < 2:
            continue
        peri = g.loc[g["placement"] == "peri", "final_val_loss"].iloc[0]
        best = g.loc[g["placement"] != "peri", "final_val_loss"].min()
        n += 1
        n_hold += bool(peri <= best * 1.02)
        parts.append(f"L{key[0]} dt={key[1]:g} wd={key[2]:g}: peri {peri:.3f} vs best other {best:.3f}")
    add("peri_loss_competitive", "Peri-LN reaches a competitive validation loss",
        "final validation loss of Peri-LN within 2% of the best other placement, matched on "
        "depth, dt, weight decay, lr, seed", n_hold, n, "; ".join(parts))

    n_checks, n_viol = int(runs["bound_checks"].sum()), int(runs["violations"].sum())
    add("zero_bound_violations", "No measured moment exceeds its proven bound",
        "violations counted over every run, probe step, point and moment (docs/bounds.md)",
        int(n_viol == 0) * len(runs), len(runs),
        f"{n_viol} violations in {n_checks} checks over {len(runs)} runs; "
        f"largest measured/bound ratio beyond k=0: {runs['max_bound_ratio'].max():.3g}")
    return pd.DataFrame(claims)


# -- writing ---------------------------------------------------------------------------------
def write_table(df: pd.DataFrame, stem: str | Path, formats=("csv", "md", "tex")) -> list[Path]:
    """CSV (fixed float format), Markdown and LaTeX versions of one table."""
    stem = Path(stem)
    paths = []
    if "csv" in formats:
        write_csv(stem.with_suffix(".csv"), df, float_format=FLOAT_FORMAT)
        paths.append(stem.with_suffix(".csv"))
    shown = df.map(lambda v: f"{v:.4g}" if isinstance(v, float) else v)
    if "md" in formats:
        write_text(stem.with_suffix(".md"), shown.to_markdown(index=False) + "\n")
        paths.append(stem.with_suffix(".md"))
    if "tex" in formats:
        write_text(stem.with_suffix(".tex"), shown.to_latex(index=False, escape=True))
        paths.append(stem.with_suffix(".tex"))
    return paths
