"""The paper's claims as tests on the study's runs table: one small function per claim.

Each claim reads ``runs`` (one row per run: grid parameters, ``role``, ``learned``, and the
statistics of ``lnstab.stats``) and returns how many comparisons it checked, how many held, and
the numbers behind them. Verdict: supported (every comparison holds), refuted (none), mixed,
or untested (the grid lacks what the claim needs: never counted as supported).

Only runs that learned (validation loss below the corpus's bigram baseline) are judged, except
runs whose sweep declares them an instability demonstration (``role`` = ``instability_demo``),
which only ``post_backward_collapse`` reads. What each criterion means, and why it is not
decided at initialisation: docs/claims.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

STUDY, DEMO = "study", "instability_demo"
MATCH = ["n_layer", "dt", "weight_decay", "lr", "seed"]  # keys a pair of runs shares
LOSS_TOLERANCE = 0.02  # relative; "matched loss" and "competitive"
SCALE_SHAPE_LIMIT = 2.0  # x^K / x^(K/2) above: faster than linear in depth
VANISHING_ADJOINT = 1e-3  # ||p0|| / ||pK|| below: the gradient vanished on the way down


@dataclass
class Claim:
    id: str
    statement: str
    criterion: str
    test: Callable[[pd.DataFrame], tuple[int, int, str]]
    decided_by: str  # what study would decide the claim where this one does not


CLAIMS: dict[str, Claim] = {}
DEEPER = ("deeper and longer training: config/extended.yaml (48 blocks, 1,000 steps, 3 seeds) on a CPU, "
          "config/gpu.yaml (48 blocks of width 512) on one GPU, config/paper.yaml at GPT-2 scale")


def claim(statement: str, criterion: str, decided_by: str = DEEPER):
    def register(fn):
        CLAIMS[fn.__name__] = Claim(fn.__name__, statement, criterion, fn, decided_by)
        return fn
    return register


def verdict(holds: int, checked: int) -> str:
    if checked == 0:
        return "untested"
    return "supported" if holds == checked else ("refuted" if holds == 0 else "mixed")


def judged(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that test the paper: learned, and not declared an instability demonstration."""
    return runs[runs["learned"].astype(bool) & (runs["role"] == STUDY)]


def pairs(df: pd.DataFrame, axis: str, a, b, keys: list[str]) -> pd.DataFrame:
    """Rows with ``axis`` == a joined to rows with ``axis`` == b on ``keys``; columns suffixed
    _a and _b."""
    left = df[df[axis] == a]
    right = df[df[axis] == b]
    return left.merge(right, on=keys, suffixes=("_a", "_b"))


def _span(values) -> str:
    v = np.asarray(list(values), float)
    v = v[np.isfinite(v)]
    if not len(v):
        return "n/a"
    return f"median {np.median(v):.3g} [{v.min():.3g}, {v.max():.3g}]"


@claim("Pre-LN's hidden-state scale grows over training, far more than Peri-LN's",
       "top-of-stream mean|x|, final / step 0: Pre-LN above Peri-LN, matched on depth, dt, "
       "weight decay, lr and seed (peak / step 0 reported)")
def pre_scale_grows_with_training(runs):
    p = pairs(judged(runs), "placement", "pre", "peri", MATCH)
    holds = int((p["scale_growth_final_a"] > p["scale_growth_final_b"]).sum())
    return holds, len(p), (f"final/step0: pre {_span(p['scale_growth_final_a'])}, peri {_span(p['scale_growth_final_b'])}; "
                           f"peak/step0: pre {_span(p['scale_growth_peak_a'])}, peri {_span(p['scale_growth_peak_b'])}")


@claim("Trained Pre-LN carries larger hidden states than trained Peri-LN",
       "final top-of-stream mean|x|: Pre-LN > Peri-LN, matched on depth, dt, weight decay, lr, seed")
def pre_above_peri_trained(runs):
    p = pairs(judged(runs), "placement", "pre", "peri", MATCH)
    return int((p["scale_final_a"] > p["scale_final_b"]).sum()), len(p), \
        f"pre / peri final scale {_span(p['scale_final_a'] / p['scale_final_b'])}"


@claim("Weight decay limits Pre-LN's hidden-state growth",
       "Pre-LN with weight decay > 0 below weight decay 0 in final and in peak top-of-stream mean|x|, "
       f"matched on depth, dt, lr, seed, among pairs whose final losses differ by at most {LOSS_TOLERANCE:.0%}")
def wd_limits_pre(runs):
    pre = judged(runs)[lambda r: r["placement"] == "pre"]
    if pre["weight_decay"].nunique() < 2:
        return 0, 0, "needs Pre-LN runs at weight decay 0 and > 0"
    p = pairs(pre, "weight_decay", pre["weight_decay"].max(), 0.0, ["n_layer", "dt", "lr", "seed"])
    gap = (p["final_val_loss_a"] - p["final_val_loss_b"]).abs() / p[["final_val_loss_a", "final_val_loss_b"]].min(axis=1)
    m = p[gap <= LOSS_TOLERANCE]
    hold = (m["scale_final_a"] < m["scale_final_b"]) & (m["scale_peak_a"] < m["scale_peak_b"])
    return int(hold.sum()), len(m), (f"final scale wd>0 / wd 0 {_span(m['scale_final_a'] / m['scale_final_b'])}; "
                                     f"peak {_span(m['scale_peak_a'] / m['scale_peak_b'])}; "
                                     f"{len(p) - len(m)} pair(s) left out for unmatched loss")


@claim("A small residual step dt limits trained Pre-LN's hidden-state scale",
       "Pre-LN final top-of-stream mean|x| at the smallest dt below the largest dt, matched on depth, "
       "weight decay, lr, seed (Peri-LN's is a theorem, docs/bounds.md F2, and is not counted)")
def small_dt_limits_trained_pre(runs):
    pre = judged(runs)[lambda r: r["placement"] == "pre"]
    if pre["dt"].nunique() < 2:
        return 0, 0, "needs Pre-LN runs at two values of dt"
    p = pairs(pre, "dt", pre["dt"].min(), pre["dt"].max(), ["n_layer", "weight_decay", "lr", "seed"])
    return int((p["scale_final_a"] < p["scale_final_b"]).sum()), len(p), \
        f"final scale small dt / large dt {_span(p['scale_final_a'] / p['scale_final_b'])}"


@claim("Pre-LN's hidden states grow faster than linearly in depth; Peri-LN's do not",
       f"at the largest trained depth, final mean|x|: x^K / x^(K/2) > {SCALE_SHAPE_LIMIT:g} for Pre-LN "
       f"and <= {SCALE_SHAPE_LIMIT:g} for Peri-LN (every run counted; massive-activation share reported)")
def depth_shape(runs):
    j = judged(runs)
    j = j[j["n_layer"] == j["n_layer"].max()] if len(j) else j
    pre, peri = j[j["placement"] == "pre"], j[j["placement"] == "peri"]
    if pre.empty or peri.empty:
        return 0, 0, "needs learned Pre-LN and Peri-LN runs at the largest depth"
    holds = int((pre["shape_ratio"] > SCALE_SHAPE_LIMIT).sum() + (peri["shape_ratio"] <= SCALE_SHAPE_LIMIT).sum())
    return holds, len(pre) + len(peri), (
        f"L={int(j['n_layer'].max())}: x^K/x^(K/2) pre {_span(pre['shape_ratio'])}, peri {_span(peri['shape_ratio'])}; "
        f"per-sub-layer factor (2nd half) pre {_span(pre['half_factor'])}, peri {_span(peri['half_factor'])}; "
        f"largest-sub-layer share pre {_span(pre['massive_share'])}, peri {_span(peri['massive_share'])}")


@claim("A small residual step dt makes gradients more uniform over depth",
       "|log10 ||p0||/||pK||| and the block-gradient spread log10(max/min), means over seeds, both "
       "smaller at the smallest dt than at the largest, per placement, depth, weight decay, lr")
def small_dt_uniform_adjoints(runs):
    j = judged(runs).assign(adjoint_log=lambda r: np.log10(r["adjoint_ratio"]).abs())
    keys = ["placement", "n_layer", "weight_decay", "lr"]
    means = j.groupby(keys + ["dt"])[["adjoint_log", "grad_spread"]].mean().reset_index()
    lo_hi = means.groupby(keys)["dt"].agg(["min", "max"]).reset_index()
    lo_hi = lo_hi[lo_hi["min"] < lo_hi["max"]]
    lo = means.merge(lo_hi[keys + ["min"]].rename(columns={"min": "dt"}), on=keys + ["dt"])
    hi = means.merge(lo_hi[keys + ["max"]].rename(columns={"max": "dt"}), on=keys + ["dt"])
    p = lo.merge(hi, on=keys, suffixes=("_a", "_b"))
    hold = (p["adjoint_log_a"] < p["adjoint_log_b"]) & (p["grad_spread_a"] < p["grad_spread_b"])
    parts = [f"{r.placement} L{r.n_layer}: |log10 ratio| {r.adjoint_log_a:.2f} vs {r.adjoint_log_b:.2f}, "
             f"spread {r.grad_spread_a:.2f} vs {r.grad_spread_b:.2f}" for r in p.itertuples()]
    return int(hold.sum()), len(p), "; ".join(parts[:6]) + ("; ..." if len(parts) > 6 else "")


@claim("Post-LN at a high learning rate collapses: vanishing adjoints, every token the same vector; "
       "at a stable learning rate it does not",
       f"Post-LN instability demonstrations: ||p0||/||pK|| < {VANISHING_ADJOINT:g} and collapsed "
       "top-layer data-wise variance (< 1e-3 of the entry-wise); learned Post-LN runs: neither")
def post_backward_collapse(runs):
    post = runs[runs["placement"] == "post"]
    demo = post[post["role"] == DEMO]
    stable = judged(post)
    if demo.empty or stable.empty:
        return 0, 0, "needs a Post-LN instability demonstration and a learned Post-LN run"
    vanish = lambda r: (r["adjoint_ratio"] < VANISHING_ADJOINT) & r["collapsed"].astype(bool)  # noqa: E731
    holds = int(vanish(demo).sum() + (~(r := stable)["collapsed"].astype(bool)
                                         & (r["adjoint_ratio"] >= VANISHING_ADJOINT)).sum())
    return holds, len(demo) + len(stable), (
        f"unstable lr {_span(demo['lr'])}: ratio {_span(demo['adjoint_ratio'])}, data/entry variance "
        f"{_span(demo['top_var_data'] / demo['top_var_entry'])}; stable: ratio {_span(stable['adjoint_ratio'])}, "
        f"data/entry variance {_span(stable['top_var_data'] / stable['top_var_entry'])}")


@claim("Peri-LN reaches a validation loss competitive with the best other placement",
       f"per depth, each placement at its best dt, weight decay and lr (lowest mean over >= 2 seeds): "
       f"Peri-LN's mean within max({LOSS_TOLERANCE:.0%}, 2 standard errors of the difference) of the best other",
       "more seeds (config/extended.yaml has 3) and the learning rate tuned per placement")
def peri_loss_competitive(runs):
    j = judged(runs)
    g = j.groupby(["placement", "n_layer", "dt", "weight_decay", "lr"])["final_val_loss"]
    cfg = g.agg(["mean", "std", "count"]).reset_index()
    cfg = cfg[cfg["count"] >= 2]
    cfg["se"] = cfg["std"] / np.sqrt(cfg["count"])
    best = cfg.loc[cfg.groupby(["placement", "n_layer"])["mean"].idxmin()]
    holds, n, parts = 0, 0, []
    for depth, b in best.groupby("n_layer"):
        if "peri" not in set(b["placement"]) or b["placement"].nunique() < 2:
            continue
        peri = b[b["placement"] == "peri"].iloc[0]
        other = b[b["placement"] != "peri"].sort_values("mean").iloc[0]
        tol = max(LOSS_TOLERANCE * other["mean"], 2 * math.hypot(peri["se"], other["se"]))
        n += 1
        holds += bool(peri["mean"] <= other["mean"] + tol)
        parts.append(f"L{depth}: peri {peri['mean']:.3f}±{peri['se']:.3f} (dt {peri['dt']:g}) vs "
                     f"{other['placement']} {other['mean']:.3f}±{other['se']:.3f} (dt {other['dt']:g}), tol {tol:.3f}")
    return holds, n, "; ".join(parts)


@claim("No measured quantity exceeds its proven bound",
       "violations over the rows that can fail (kind 'check': k >= 1, not an LN identity), every run "
       "and probe step; the bounds hold for any weights, so every run counts")
def zero_bound_violations(runs):
    r = runs[runs["bound_checks"] > 0]
    return int((r["violations"] == 0).sum()), len(r), (
        f"{int(r['violations'].sum())} violations in {int(r['bound_checks'].sum())} checks over {len(r)} runs; "
        f"largest measured/bound after step 0 {r['max_check_ratio'].max():.3g}; "
        f"largest final increment ratio {r['max_increment_ratio'].max():.3g}")


def claims_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per claim: id, statement, criterion, holds, checked, numbers, verdict."""
    rows = []
    for c in CLAIMS.values():
        holds, checked, numbers = c.test(runs)
        rows.append({"claim": c.id, "verdict": verdict(holds, checked), "holds": holds, "checked": checked,
                     "statement": c.statement, "criterion": c.criterion, "numbers": numbers})
    return pd.DataFrame(rows)
