"""Per-run statistics read by the claims and the figures, computed from the collected tables.

Nothing here trains or imports torch: every number is a function of ``probes.csv`` and
``bounds.csv``, so it can be recomputed (and tested) from tables alone. Definitions:

- scale: the top-of-stream mean |x| (x^(K), the last probe point); its value at step 0, at the
  end of warmup (the first probe at or after ``train.warmup_steps``: ``warmup_step``), at the
  final probe, and its peak over probes with the step of the peak. Growth out of the
  initialisation, ``scale_growth_init`` = end of warmup / step 0, is reported apart from growth
  by training, ``scale_growth_train`` = final / end of warmup; ``scale_final_over_peak`` says
  whether the scale was still growing at the end. (final / step 0 and peak / step 0 are kept as
  ``scale_growth_final`` and ``scale_growth_peak``.) ``scale_bound_final``: the forward bound on
  the top-of-stream mean |x| at the final probe (docs/bounds.md), whose growth in depth is set
  next to the measured one.
- depth shape of mean |x| at the final probe, without k = 0 (a different scale, the embeddings):
  ``shape_ratio`` = x^(K) / x^(K/2); ``half_factor`` = the per-sub-layer factor of a log-linear
  fit over the second half of the stream (exp of the slope of log x^(k), k = K/2..K);
  ``massive_share`` = the largest |x^(j) - x^(j-1)| over j = 2..K divided by their sum: the
  share of the growth from k = 1 to K taken by the single largest sub-layer.
- backward: ``adjoint_ratio`` = ||p^(0)|| / ||p^(K)||, ``grad_spread`` = log10(max / min) of the
  per-block gradient norms, both at the final probe; ``backward_slack_log10`` = log10 of the
  backward product bound over the measured adjoint ratio at k = 0 (a diagnostic, docs/bounds.md).
- tightness: over the rows that can fail (kind "check"), the largest measured / bound at any
  probe after step 0, and the increment ratio (s(x^k) - s(x^0)) / (bound_k - s(x^0)) at the
  final probe, s in seminorm units (square roots of the variances) so that it is the share of
  the bound's own increment that the measured growth used.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .grid import GRID_KEYS

RUN_KEYS = list(GRID_KEYS)  # placement, n_layer, dt, weight_decay, lr, seed
MOMENTS = ("mean_abs", "var_entry", "var_data", "mean_norm")
HIDDEN_POINTS = ("embed", "attn", "mlp")
# top-layer data-wise variance below this fraction of the entry-wise variance: every token is
# (nearly) the same vector, the forward collapse of Post-LN at a high learning rate
COLLAPSE_RATIO = 1e-3


def at_last_step(df: pd.DataFrame) -> pd.DataFrame:
    """Rows at each run's final probe step."""
    return df[df["step"] == df.groupby(RUN_KEYS)["step"].transform("max")]


def hidden_rows(probes: pd.DataFrame, quantities=MOMENTS) -> pd.DataFrame:
    return probes[probes["point"].isin(HIDDEN_POINTS) & probes["quantity"].isin(quantities)]


def scale_table(probes: pd.DataFrame) -> pd.DataFrame:
    """Per run and probe step: top-of-stream mean|x|, entry- and data-wise variance, and the
    largest spectral norm of any weight matrix (the "scale over training" figure)."""
    h = hidden_rows(probes, ("mean_abs", "var_entry", "var_data"))
    top = h[h["sublayer"] == h.groupby(RUN_KEYS)["sublayer"].transform("max")]
    wide = top.pivot_table(index=RUN_KEYS + ["step"], columns="quantity", values="value", aggfunc="first")
    wide.columns = [f"top_{c}" for c in wide.columns]
    sn = probes[probes["quantity"] == "spectral_norm"].groupby(RUN_KEYS + ["step"])["value"].max()
    out = wide.join(sn.rename("max_spectral_norm")).reset_index()
    return out.sort_values(RUN_KEYS + ["step"], kind="stable").reset_index(drop=True)


def depth_exponent(depths, values) -> float:
    """The exponent a of values ~ depth^a, least squares in log-log: the one depth fit of the
    claims (the final top-of-stream mean|x| over the depths trained) and of the screen."""
    return float(np.polynomial.polynomial.polyfit(np.log(np.asarray(depths, float)),
                                                  np.log(np.asarray(values, float)), 1)[1])


def depth_shape(s: np.ndarray) -> dict[str, float]:
    """shape_ratio, half_factor and massive_share of one profile s[k], k = 0..K (see module doc)."""
    s = np.asarray(s, float)
    K = len(s) - 1
    if K < 2 or not np.all(np.isfinite(s)) or np.any(s <= 0):
        return {"shape_ratio": np.nan, "half_factor": np.nan, "massive_share": np.nan}
    ks = np.arange(K // 2, K + 1)
    slope = np.polynomial.polynomial.polyfit(ks, np.log(s[ks]), 1)[1]
    inc = np.abs(np.diff(s[1:]))
    return {"shape_ratio": s[K] / s[K // 2], "half_factor": float(np.exp(slope)),
            "massive_share": float(inc.max() / inc.sum()) if inc.sum() > 0 else np.nan}


def _per_run(df: pd.DataFrame, fn, name_or_names) -> pd.DataFrame:
    rows = []
    for key, g in df.groupby(RUN_KEYS, sort=True):
        v = fn(g)
        rows.append({**dict(zip(RUN_KEYS, key)), **(v if isinstance(v, dict) else {name_or_names: v})})
    return pd.DataFrame(rows, columns=RUN_KEYS + ([name_or_names] if isinstance(name_or_names, str) else list(name_or_names)))


def increment_ratios(bounds: pd.DataFrame) -> pd.DataFrame:
    """The "check" rows of the forward moments with their increment ratio (module doc)."""
    fwd = bounds[bounds["quantity"].isin(MOMENTS)]
    start = fwd[fwd["sublayer"] == 0][RUN_KEYS + ["step", "quantity", "measured"]].rename(columns={"measured": "start"})
    chk = fwd[fwd["kind"] == "check"].merge(start, on=RUN_KEYS + ["step", "quantity"], how="left")
    unit = np.where(chk["quantity"].str.startswith("var"), 0.5, 1.0)  # seminorm units
    s0, m, b = (chk[c].clip(lower=0) ** unit for c in ("start", "measured", "bound"))
    den = b - s0
    chk["increment_ratio"] = np.where(den > 0, (m - s0) / den.where(den > 0, 1), np.nan)
    return chk


def warmup_scale(sc: pd.DataFrame, warmup: pd.DataFrame | None) -> pd.DataFrame:
    """Per run: the first probe step at or after its warmup (``warmup``: RUN_KEYS + warmup_steps;
    None: 0) and the top-of-stream mean|x| there."""
    w = sc[RUN_KEYS].drop_duplicates().assign(warmup_steps=0) if warmup is None else warmup
    m = sc.merge(w[RUN_KEYS + ["warmup_steps"]], on=RUN_KEYS, how="left")
    m = m[m["step"] >= m["warmup_steps"].fillna(0)]
    first = m.sort_values("step").groupby(RUN_KEYS).first()
    return pd.DataFrame({"warmup_step": first["step"], "scale_warmup": first["top_mean_abs"]})


def run_stats(probes: pd.DataFrame, bounds: pd.DataFrame, warmup: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per run with every statistic of the module doc; ``warmup`` as in ``warmup_scale``."""
    sc = scale_table(probes).sort_values(RUN_KEYS + ["step"])
    g = sc.groupby(RUN_KEYS)
    first, last, peak = g.first(), g.last(), g.max()
    peak_step = sc.loc[g["top_mean_abs"].idxmax()].set_index(RUN_KEYS)["step"]
    out = pd.DataFrame({
        "scale_step0": first["top_mean_abs"], "scale_final": last["top_mean_abs"],
        "scale_peak": peak["top_mean_abs"], "peak_step": peak_step,
        "top_var_entry": last["top_var_entry"], "top_var_data": last["top_var_data"],
        "max_spectral_norm": last["max_spectral_norm"],
    })
    out["scale_growth_final"] = out["scale_final"] / out["scale_step0"]
    out["scale_growth_peak"] = out["scale_peak"] / out["scale_step0"]
    out = out.join(warmup_scale(sc, warmup))
    out["scale_growth_init"] = out["scale_warmup"] / out["scale_step0"]
    out["scale_growth_train"] = out["scale_final"] / out["scale_warmup"]
    out["scale_final_over_peak"] = out["scale_final"] / out["scale_peak"]
    out["collapsed"] = out["top_var_data"] < COLLAPSE_RATIO * out["top_var_entry"]
    out = out.reset_index()

    final = at_last_step(probes)
    prof = hidden_rows(final, ("mean_abs",)).sort_values("sublayer")
    shape = _per_run(prof, lambda r: depth_shape(r["value"].to_numpy()), ("shape_ratio", "half_factor", "massive_share"))
    adj = final[final["quantity"] == "adjoint_norm"].sort_values("sublayer")
    adjoint = _per_run(adj, lambda r: r["value"].iloc[0] / r["value"].iloc[-1] if r["value"].iloc[-1] > 0 else np.nan,
                       "adjoint_ratio")
    blocks = final[(final["point"] == "block") & (final["quantity"] == "grad_norm")]
    spread = _per_run(blocks, lambda r: float(np.log10(r["value"].max() / r["value"].min()))
                      if r["value"].min() > 0 else np.nan, "grad_spread")

    checks = bounds[(bounds["kind"] == "check") & (bounds["step"] > 0)]
    max_ratio = _per_run(checks, lambda r: r["ratio"].max(), "max_check_ratio")
    inc = at_last_step(increment_ratios(bounds)) if len(bounds) else bounds
    max_inc = _per_run(inc, lambda r: r["increment_ratio"].max(), "max_increment_ratio")
    diag = at_last_step(bounds[(bounds["kind"] == "diagnostic") & (bounds["sublayer"] == 0)])
    slack = _per_run(diag, lambda r: float(np.log10(r["bound"].iloc[0] / r["measured"].iloc[0]))
                     if r["measured"].iloc[0] > 0 else np.nan, "backward_slack_log10")
    top = at_last_step(bounds[(bounds["quantity"] == "mean_abs")])
    top = top[top["sublayer"] == top.groupby(RUN_KEYS)["sublayer"].transform("max")]
    top_bound = _per_run(top, lambda r: r["bound"].iloc[0], "scale_bound_final")
    for t in (shape, adjoint, spread, max_ratio, max_inc, slack, top_bound):
        out = out.merge(t, on=RUN_KEYS, how="left")
    return out


def tightness_table(bounds: pd.DataFrame) -> pd.DataFrame:
    """Per placement and quantity of the rows that can fail: checks, violations, the largest
    measured / bound after step 0, and the largest increment ratio at the final probe."""
    checks = bounds[bounds["kind"] == "check"]
    base = checks.groupby(["placement", "quantity"]).agg(
        checks=("violation", "size"), violations=("violation", "sum"))
    later = checks[checks["step"] > 0].groupby(["placement", "quantity"])["ratio"].max().rename("max_ratio_after_step0")
    inc = at_last_step(increment_ratios(bounds)).groupby(["placement", "quantity"])["increment_ratio"].max()
    out = base.join(later).join(inc.rename("max_increment_ratio_final")).reset_index()
    out["not_counted"] = 0
    apart = bounds[bounds["kind"] != "check"].groupby(["placement", "kind"]).size()
    extra = pd.DataFrame([{"placement": p, "quantity": f"({kind} rows)", "checks": 0, "violations": 0,
                           "not_counted": int(n)} for (p, kind), n in apart.items()])
    out = pd.concat([out, extra], ignore_index=True) if len(extra) else out  # reported apart, never counted
    out[["checks", "violations", "not_counted"]] = out[["checks", "violations", "not_counted"]].astype(int)
    return out.sort_values(["placement", "quantity"]).reset_index(drop=True)


def slope_table(bounds: pd.DataFrame) -> pd.DataFrame:
    """The per-sub-layer slopes C_j of the forward bound (the bound on max_t ||branch_t||) next to
    the measured max_t ||branch_t||, at the final probe: where an exponential-in-depth claim
    would have to live (a product of slopes growing with j)."""
    rows = at_last_step(bounds[bounds["quantity"] == "branch_norm_max"])
    out = rows[RUN_KEYS + ["step", "sublayer", "point", "layer", "measured", "bound"]].rename(
        columns={"bound": "slope", "measured": "branch_norm_max"})
    return out.sort_values(RUN_KEYS + ["sublayer"]).reset_index(drop=True)


def loss_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Final validation loss per configuration: mean, standard deviation and standard error over
    seeds, with how many seeds learned."""
    keys = [k for k in RUN_KEYS if k != "seed"] + ["role"]
    g = runs.groupby(keys, sort=True)
    out = g["final_val_loss"].agg(["mean", "std", "count"]).rename(
        columns={"mean": "val_loss_mean", "std": "val_loss_std", "count": "seeds"})
    out["val_loss_se"] = out["val_loss_std"] / np.sqrt(out["seeds"])
    out["learned"] = g["learned"].sum().astype(int)
    return out.reset_index()


def dt_ablation_table(runs: pd.DataFrame) -> pd.DataFrame:
    """What dt is under AdamW (docs/theory.md, "dt under AdamW"), per placement and depth where the
    study trained the ablation: dt as the step; dt folded into the last maps (the dt = 1 model at
    dt x init, dt x lr, weight decay / dt: the same training up to clipping); dt = 1 with only the
    last maps' init scaled; and dt = 1. Mean over the learned study runs of each variant's seeds."""
    r = runs[(runs["role"] == "study") & runs["learned"].astype(bool)]
    fixed = ["placement", "n_layer", "weight_decay", "lr"]
    rows = []
    for key, g in r.groupby(fixed, sort=True):
        if not (g["fold_dt"].astype(bool).any() or (g["init_scale"] != 1).any()):
            continue
        for (dt, scale, fold), v in g.groupby(["dt", "init_scale", "fold_dt"], sort=True):
            variant = ("dt folded into the last maps" if fold else
                       ("last-map init scaled" if scale != 1 else "dt as the step"))
            rows.append({**dict(zip(fixed, key)), "variant": variant, "dt": dt, "init_scale": scale,
                         "fold_dt": bool(fold), "seeds": len(v), "val_loss_mean": v["final_val_loss"].mean(),
                         "val_loss_std": v["final_val_loss"].std(), "scale_final_mean": v["scale_final"].mean(),
                         "adjoint_ratio_mean": v["adjoint_ratio"].mean()})
    cols = fixed + ["variant", "dt", "init_scale", "fold_dt", "seeds", "val_loss_mean", "val_loss_std",
                    "scale_final_mean", "adjoint_ratio_mean"]
    return pd.DataFrame(rows, columns=cols)
