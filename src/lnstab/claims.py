"""The paper's claims as tests on the study's runs table: one small function per claim.

Each claim reads ``runs`` (one row per run: grid parameters, ``role``, ``learned``, and the
statistics of ``lnstab.stats``) and returns ``Evidence``: how many comparisons it checked and
how many held, the effect size as the mean over seeds of a per-seed effect with its 95%
t-interval over seeds, and the numbers behind them. The verdict is decided by the interval:

    supported   the interval lies on the side the claim states, and every comparison holds
    mixed       the interval lies on that side, but some comparison does not hold
    refuted     the interval lies on the other side
    undecided   the interval contains the claim's reference value: within seed noise
    untested    the grid lacks what the claim needs (runs, depths, seeds, an equal tuning budget)

Only ``supported`` counts for the paper. Only runs that learned (validation loss below the
corpus's bigram baseline) and are study runs are judged. Instability demonstrations and the
package's own regression checks are tables of their own (``demonstrations_table``,
``software_checks_table``), never claims. Criteria and reference points: docs/claims.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from .config import ModelConfig
from .stats import COLLAPSE_RATIO, RUN_KEYS, depth_exponent

STUDY, DEMO = "study", "instability_demo"
LOSS_TOLERANCE = 0.02  # relative: "competitive" = at most 2% worse than the best other placement
VANISHING_ADJOINT = 1e-3  # ||p0|| / ||pK|| below: the gradient vanished on the way down
CONFIDENCE = 0.95  # of the interval over seeds
MIN_TRIAL_LRS = 3  # learning rates every placement of a loss comparison must have been tried at
VERDICTS = ("supported", "mixed", "refuted", "undecided", "untested")


@dataclass
class Evidence:
    holds: int
    checked: int
    numbers: str
    per_seed: pd.Series | None = None  # seed -> the claim's effect in that seed
    needs: str = ""  # what the grid lacks, when the claim cannot be tested

    def interval(self) -> tuple[float, float, float, int]:
        """(effect, ci_low, ci_high, seeds): mean over seeds with its t-interval."""
        v = self.per_seed.dropna() if self.per_seed is not None else pd.Series(dtype=float)
        n = len(v)
        if n == 0:
            return math.nan, math.nan, math.nan, 0
        mean = float(v.mean())
        if n < 2:
            return mean, math.nan, math.nan, n
        from scipy import stats as sps  # here: scipy.stats costs every training job 0.6 s of start-up

        half = float(sps.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
        return mean, mean - half, mean + half, n


@dataclass
class Claim:
    id: str
    statement: str
    criterion: str
    effect: str  # what the effect number is, with its reference point
    side: str  # "above" | "below": where the claim puts the effect relative to ``reference``
    reference: float
    test: Callable[[pd.DataFrame], Evidence]
    decided_by: tuple[str, ...]  # studies that would decide it, in order of cost
    min_seeds: int = 2
    # a grid key whose values are judged apart (one row each): where the data decide the claim
    # differently at different values, pooling them would read "undecided" and misreport both
    split: str | None = None
    # growth measured from a reference step (the end of warmup): its verdict is also given from
    # every later probe step (claims_reference.csv), so the choice of reference is visible
    from_reference: bool = False


CLAIMS: dict[str, Claim] = {}
EXTENDED = "config/extended.yaml (8-48 blocks, 1,000 steps, 3 seeds, about 45 minutes on 2 cores)"
GPU = "config/gpu.yaml (48 blocks of width 512, on one GPU)"
PAPER = "config/paper.yaml (GPT-2 scale, GPU-hours: docs/plans/paper.md)"
TUNING = ("config/tuning.yaml (every placement at the same 24 trials per depth: 6 learning rates from 1e-3 to 4e-2 "
          "x 2 last-map init scales x dt 1 and 0.1; 3 seeds; 4 and 16 blocks; about 1.5 hours on 2 cores)")
DEEPER = (EXTENDED, GPU, PAPER)
WIDER_TUNING = ("config/tuning.yaml's present grid (learning rates up to 4e-2, 4 and 16 blocks; the committed "
                "tuning results are the previous grid's, whose best trials sit at its largest rate, 1e-2)")


def claim(statement: str, criterion: str, effect: str, side: str, reference: float,
          decided_by: tuple[str, ...] = DEEPER, min_seeds: int = 2, split: str | None = None,
          from_reference: bool = False):
    def register(fn):
        CLAIMS[fn.__name__] = Claim(fn.__name__, statement, criterion, effect, side, reference, fn,
                                    decided_by, min_seeds, split, from_reference)
        return fn
    return register


def decide(c: Claim, ev: Evidence) -> tuple[str, float, float, float, int]:
    """(verdict, effect, ci_low, ci_high, seeds) of one claim's evidence (module doc)."""
    effect, lo, hi, n = ev.interval()
    if ev.checked == 0 or ev.needs or n < c.min_seeds:
        return "untested", effect, lo, hi, n
    if math.isnan(lo):
        return "undecided", effect, lo, hi, n
    on_side = lo > c.reference if c.side == "above" else hi < c.reference
    against = hi < c.reference if c.side == "above" else lo > c.reference
    if on_side:
        return ("supported" if ev.holds == ev.checked else "mixed"), effect, lo, hi, n
    return ("refuted" if against else "undecided"), effect, lo, hi, n


def judged(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that test the paper: learned, and not declared an instability demonstration."""
    return runs[runs["learned"].astype(bool) & (runs["role"] == STUDY)]


def keys_but(*axes: str) -> list[str]:
    """The grid keys a comparison along ``axes`` holds fixed."""
    return [k for k in RUN_KEYS if k not in axes]


def pairs(df: pd.DataFrame, axis: str, a, b, keys: list[str] | None = None) -> pd.DataFrame:
    """Rows with ``axis`` == a joined to rows with ``axis`` == b on ``keys`` (default: every
    other grid key, seed included); columns suffixed _a and _b."""
    keys = keys_but(axis) if keys is None else keys
    return df[df[axis] == a].merge(df[df[axis] == b], on=keys, suffixes=("_a", "_b"))


def per_seed(df: pd.DataFrame, values) -> pd.Series:
    """Mean of ``values`` (aligned with df) over the comparisons of each seed."""
    return pd.Series(np.asarray(values, float), index=df.index).groupby(df["seed"]).mean()


def span(values) -> str:
    v = np.asarray(list(values), float)
    v = v[np.isfinite(v)]
    if not len(v):
        return "n/a"
    return f"median {np.median(v):.3g} [{v.min():.3g}, {v.max():.3g}]"


def log_ratio(a, b) -> np.ndarray:
    return np.log10(np.asarray(a, float) / np.asarray(b, float))


def growth_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The judged runs of the growth claims: dt-folded runs are the dt ablation's second
    parametrisation of the same comparison, not more pairs of it."""
    return judged(runs)[lambda r: ~r["fold_dt"].astype(bool)]


def _growth_numbers(df: pd.DataFrame, suffix: str = "") -> str:
    col = lambda name: df[name + suffix]  # noqa: E731
    return (f"final/warmup {span(col('scale_growth_train'))}; out of the init (warmup/step 0) "
            f"{span(col('scale_growth_init'))}; peak step {span(col('peak_step'))}; final/peak "
            f"{span(col('scale_final_over_peak'))}")


GROWTH_REFERENCE = ("Reference: the end of warmup (growth out of the initialisation, step 0 to warmup, is reported "
                    "apart and is not the claim); the verdict from every later probe step as reference is in "
                    "claims_reference.csv. Judged per dt; dt-folded runs left out")


@claim("Pre-LN's hidden-state scale grows during training",
       f"top-of-stream mean|x|, final / end of warmup, of learned Pre-LN runs: above 1. {GROWTH_REFERENCE}",
       "mean over seeds of log10(Pre-LN final / end-of-warmup scale)", "above", 0.0, split="dt", from_reference=True)
def pre_scale_grows_after_warmup(runs):
    pre = growth_runs(runs)[lambda r: r["placement"] == "pre"]
    if pre.empty:
        return Evidence(0, 0, "needs learned Pre-LN runs")
    e = np.log10(pre["scale_growth_train"].to_numpy(float))
    return Evidence(int((e > 0).sum()), len(pre), f"pre, from step {int(pre['warmup_step'].max())}: "
                    + _growth_numbers(pre), per_seed(pre, e))


@claim("Pre-LN's hidden-state scale grows during training more than Peri-LN's",
       "top-of-stream mean|x|, final / end of warmup: Pre-LN above Peri-LN, pairs matched on every other grid key "
       f"and the seed. {GROWTH_REFERENCE}",
       "mean log10(Pre-LN growth / Peri-LN growth) after warmup", "above", 0.0, split="dt", from_reference=True)
def pre_scale_grows_more_than_peri(runs):
    p = pairs(growth_runs(runs), "placement", "pre", "peri")
    if p.empty:
        return Evidence(0, 0, "needs learned Pre-LN and Peri-LN runs matched on the other grid keys")
    e = log_ratio(p["scale_growth_train_a"], p["scale_growth_train_b"])
    return Evidence(int((e > 0).sum()), len(p), (
        f"from step {int(p['warmup_step_a'].max())}: pre {_growth_numbers(p, '_a')}; peri {_growth_numbers(p, '_b')}"),
        per_seed(p, e))


@claim("Trained Pre-LN carries larger hidden states than trained Peri-LN",
       "final top-of-stream mean|x|: Pre-LN > Peri-LN, pairs matched on every other grid key and the seed",
       "mean log10(Pre-LN / Peri-LN final scale)", "above", 0.0)
def pre_above_peri_trained(runs):
    p = pairs(judged(runs), "placement", "pre", "peri")
    if p.empty:
        return Evidence(0, 0, "needs learned Pre-LN and Peri-LN runs matched on the other grid keys")
    e = log_ratio(p["scale_final_a"], p["scale_final_b"])
    return Evidence(int((e > 0).sum()), len(p), f"pre / peri final scale {span(10 ** e)}", per_seed(p, e))


@claim("Weight decay limits Pre-LN's hidden-state growth",
       "Pre-LN at weight decay > 0 below weight decay 0 in final and in peak top-of-stream mean|x|, pairs "
       f"matched on the other grid keys and the seed whose final losses differ by at most {LOSS_TOLERANCE:.0%}",
       "mean log10(final scale at weight decay > 0 / at 0)", "below", 0.0)
def wd_limits_pre(runs):
    pre = judged(runs)[lambda r: r["placement"] == "pre"]
    if pre["weight_decay"].nunique() < 2:
        return Evidence(0, 0, "needs Pre-LN runs at weight decay 0 and > 0")
    p = pairs(pre, "weight_decay", pre["weight_decay"].max(), 0.0)
    gap = (p["final_val_loss_a"] - p["final_val_loss_b"]).abs() / p[["final_val_loss_a", "final_val_loss_b"]].min(axis=1)
    m = p[gap <= LOSS_TOLERANCE]
    e = log_ratio(m["scale_final_a"], m["scale_final_b"])
    hold = (m["scale_final_a"] < m["scale_final_b"]) & (m["scale_peak_a"] < m["scale_peak_b"])
    return Evidence(int(hold.sum()), len(m), (
        f"final scale wd>0 / wd 0 {span(10 ** e)}; peak {span(m['scale_peak_a'] / m['scale_peak_b'])}; "
        f"{len(p) - len(m)} pair(s) left out for unmatched loss"), per_seed(m, e))


@claim("A small residual step dt limits trained Pre-LN's hidden-state scale",
       "Pre-LN final top-of-stream mean|x| at the smallest dt below the largest, pairs matched on the other "
       "grid keys and the seed. Under AdamW dt is the dt = 1 model with each branch's last map started dt "
       "times smaller and trained at dt times the lr and weight decay / dt (docs/theory.md): the claim is "
       "about that parametrisation. Peri-LN's dt dependence is a theorem (docs/bounds.md F2), not counted",
       "mean log10(final scale at the smallest dt / at the largest)", "below", 0.0)
def small_dt_limits_trained_pre(runs):
    pre = judged(runs)[lambda r: (r["placement"] == "pre") & ~r["fold_dt"].astype(bool)]
    if pre["dt"].nunique() < 2:
        return Evidence(0, 0, "needs Pre-LN runs at two values of dt")
    p = pairs(pre, "dt", pre["dt"].min(), pre["dt"].max())
    e = log_ratio(p["scale_final_a"], p["scale_final_b"])
    return Evidence(int((e < 0).sum()), len(p), f"final scale small dt / large dt {span(10 ** e)}", per_seed(p, e))


def depth_exponents(runs: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per placement and every other grid key but depth: the exponent a of ``column`` ~ L^a fitted
    (least squares in log-log) across the depths trained, where there are at least two."""
    rows = []
    for key, g in runs.groupby(keys_but("n_layer"), sort=True):
        g = g[np.isfinite(g[column]) & (g[column] > 0)]
        if g["n_layer"].nunique() < 2:
            continue
        rows.append({**dict(zip(keys_but("n_layer"), key)), "exponent": depth_exponent(g["n_layer"], g[column]),
                     "depths": ",".join(str(d) for d in sorted(g["n_layer"]))})
    return pd.DataFrame(rows, columns=keys_but("n_layer") + ["exponent", "depths"])


def _depth_claim(runs, placement: str, faster: bool) -> Evidence:
    j = judged(runs)[lambda r: r["placement"] == placement]
    fit = depth_exponents(j, "scale_final")
    if fit.empty:
        return Evidence(0, 0, f"needs learned {placement} runs at two depths or more")
    bound = depth_exponents(j, "scale_bound_final")
    holds = int((fit["exponent"] > 1).sum() if faster else (fit["exponent"] <= 1).sum())
    deepest = j[j["n_layer"] == j["n_layer"].max()]
    return Evidence(holds, len(fit), (
        f"final top scale ~ L^a over depths {fit['depths'].iloc[0]}: a {span(fit['exponent'])}; the bound's own "
        f"exponent {span(bound['exponent'])}; at L={int(j['n_layer'].max())}: x^K/x^(K/2) "
        f"{span(deepest['shape_ratio'])}, per-sub-layer factor (2nd half) {span(deepest['half_factor'])}"),
        per_seed(fit, fit["exponent"]))


@claim("Peri-LN's trained hidden-state scale grows at most linearly in depth",
       "exponent a of the final top-of-stream mean|x| ~ L^a, fitted across the depths trained (per dt, "
       "weight decay, lr, seed): a <= 1 (the bound's own exponent reported next to it)",
       "mean over seeds of the fitted depth exponent a; reference 1 (linear)", "below", 1.0)
def peri_depth_at_most_linear(runs):
    return _depth_claim(runs, "peri", faster=False)


@claim("Pre-LN's trained hidden-state scale grows faster than linearly in depth",
       "exponent a of the final top-of-stream mean|x| ~ L^a, fitted across the depths trained (per dt, "
       "weight decay, lr, seed): a > 1. An exponential upper bound does not imply exponential growth: "
       "the bound's own exponent is reported next to the measured one",
       "mean over seeds of the fitted depth exponent a; reference 1 (linear)", "above", 1.0)
def pre_depth_faster_than_linear(runs):
    return _depth_claim(runs, "pre", faster=True)


def _small_dt_pairs(runs: pd.DataFrame) -> pd.DataFrame:
    j = judged(runs)[lambda r: ~r["fold_dt"].astype(bool)]
    out = []
    for _, g in j.groupby(keys_but("dt", "seed")):
        if g["dt"].nunique() >= 2:
            out.append(pairs(g, "dt", g["dt"].min(), g["dt"].max()))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


@claim("A small residual step dt makes the adjoints more uniform over depth",
       "|log10 ||p0||/||pK|||, the gap between the gradient reaching the embeddings and the top, smaller at "
       "the smallest dt than at the largest, pairs matched on the other grid keys and the seed; at the final probe",
       "mean difference of |log10 adjoint ratio|, smallest dt minus largest", "below", 0.0)
def small_dt_uniform_adjoints(runs):
    p = _small_dt_pairs(runs)
    if p.empty:
        return Evidence(0, 0, "needs learned runs at two values of dt")
    e = np.abs(np.log10(p["adjoint_ratio_a"])) - np.abs(np.log10(p["adjoint_ratio_b"]))
    return Evidence(int((e < 0).sum()), len(p), (
        f"|log10 ratio| small dt {span(np.abs(np.log10(p['adjoint_ratio_a'])))} vs large dt "
        f"{span(np.abs(np.log10(p['adjoint_ratio_b'])))}"), per_seed(p, e))


@claim("A small residual step dt makes the block gradients more uniform over depth",
       "block-gradient spread log10(max/min) over blocks smaller at the smallest dt than at the largest, "
       "pairs matched on the other grid keys and the seed; at the final probe; at least 3 seeds",
       "mean difference of the spread, smallest dt minus largest", "below", 0.0, min_seeds=3)
def small_dt_uniform_grad_spread(runs):
    p = _small_dt_pairs(runs)
    if p.empty:
        return Evidence(0, 0, "needs learned runs at two values of dt")
    e = p["grad_spread_a"] - p["grad_spread_b"]
    return Evidence(int((e < 0).sum()), len(p), (
        f"spread small dt {span(p['grad_spread_a'])} vs large dt {span(p['grad_spread_b'])}"), per_seed(p, e))


TRIAL_KEYS = ["lr", "init_scale", "weight_decay"]  # what a tuning trial varies
OWN_INIT = ModelConfig.last_map_init_scale  # the package's own init of the branches' last maps (x1)


def tuning_budget(j: pd.DataFrame) -> pd.DataFrame:
    """Per placement, depth and dt: how many learning rates and tuning trials (distinct lr x
    last-map init scale x weight decay) its study runs were tried at, learned or not (a trial
    that failed was spent all the same), and the fewest seeds of any trial."""
    cell = ["placement", "n_layer", "dt"]
    per_trial = j.groupby(cell + TRIAL_KEYS)["seed"].nunique().rename("seeds").reset_index()
    g = per_trial.groupby(cell)
    return pd.DataFrame({"lrs": g["lr"].nunique(), "trials": g.size(), "seeds": g["seeds"].min()}).reset_index()


def _best_per_seed(j: pd.DataFrame, placement: str, depth: int, dt=None, init_scale=None) -> tuple[pd.Series, dict]:
    """Losses per seed of the placement's best trial (lowest mean over seeds) at one depth, among
    the trials at ``dt`` and ``init_scale`` where given."""
    r = j[(j["placement"] == placement) & (j["n_layer"] == depth) & (j["dt"] == dt if dt is not None else True)
          & (j["init_scale"] == init_scale if init_scale is not None else True)]
    means = r.groupby(keys_but("seed"))["final_val_loss"].mean()
    best = dict(zip(keys_but("seed"), means.idxmin()))
    sel = r[np.logical_and.reduce([r[k] == v for k, v in best.items()])]
    return sel.set_index("seed")["final_val_loss"], best


@claim("Peri-LN reaches a validation loss competitive with the best other placement",
       f"per depth, best trial against best trial (lowest mean final validation loss over seeds); every placement "
       f"tried at >= {MIN_TRIAL_LRS} learning rates and as many trials (lr x last-map init scale, Peri-LN's output-"
       f"gain init counted as tuned) as the others; Peri-LN at most {LOSS_TOLERANCE:.0%} worse; Peri-LN against "
       "Pre-LN at dt 1 reported too; at least 3 seeds; untested while any placement's best trial is at its grid's "
       "smallest or largest learning rate (the optimum may lie outside the grid)",
       "mean over seeds of (Peri-LN - best other) / best other, per-seed losses paired by seed; "
       f"reference +{LOSS_TOLERANCE:.0%}", "below", LOSS_TOLERANCE, decided_by=(TUNING, WIDER_TUNING), min_seeds=3)
def peri_loss_competitive(runs):
    tried = runs[(runs["role"] == STUDY) & ~runs["fold_dt"].astype(bool)]  # the dt ablation is not a trial
    j = judged(tried)
    budget = tuning_budget(tried)
    per_depth, holds, parts, needs, at_edge = [], 0, [], [], []
    for depth, b in budget.groupby("n_layer"):
        best_dt = b.groupby("placement").agg(lrs=("lrs", "max"), trials=("trials", "sum"), seeds=("seeds", "min"))
        if "peri" not in best_dt.index or len(best_dt) < 2:
            continue
        if best_dt["lrs"].min() < MIN_TRIAL_LRS or best_dt["trials"].nunique() > 1:
            needs.append(f"L{depth}: trials per placement " + ", ".join(
                f"{p} {int(r.trials)} ({int(r.lrs)} lr)" for p, r in best_dt.iterrows()))
            continue
        peri, _ = _best_per_seed(j, "peri", depth)
        others = {p: _best_per_seed(j, p, depth) for p in best_dt.index if p != "peri"}
        other_name = min(others, key=lambda p: others[p][0].mean())
        other, other_cfg = others[other_name]
        rel = ((peri - other) / other).dropna()
        per_depth.append(rel)
        holds += bool(rel.mean() <= LOSS_TOLERANCE)
        line = (f"L{depth}: peri {peri.mean():.3f} vs {other_name} {other.mean():.3f} (lr {other_cfg['lr']:g}, "
                f"dt {other_cfg['dt']:g}, init x{other_cfg['init_scale']:g}), relative {rel.mean():+.3f}")
        edge = [p for p in best_dt.index if _best_per_seed(j, p, depth)[1]["lr"] in
                (tried[(tried["placement"] == p) & (tried["n_layer"] == depth)]["lr"].agg(["min", "max"]).tolist())]
        if edge:  # the optimum may lie outside the grid: an equal budget, not a tuned placement
            line += f"; best lr at the edge of the grid for {', '.join(sorted(edge))}"
            at_edge.append(f"L{depth}")
        if {1.0} <= set(b[b["placement"] == "peri"]["dt"]) & set(b[b["placement"] == "pre"]["dt"]):
            p1, pre1 = _best_per_seed(j, "peri", depth, 1.0)[0], _best_per_seed(j, "pre", depth, 1.0)[0]
            d1 = (p1 - pre1).dropna()
            ev = Evidence(0, 1, "", d1).interval()
            line += f"; at dt 1: peri - pre {ev[0]:+.2g} nats [{ev[1]:+.2g}, {ev[2]:+.2g}] over {ev[3]} seeds"
            own = j[(j["placement"] == "peri") & (j["n_layer"] == depth) & (j["dt"] == 1.0)
                    & (j["init_scale"] == OWN_INIT)]
            if not own.empty and set(j[(j["placement"] == "peri") & (j["n_layer"] == depth)]["init_scale"]) != {OWN_INIT}:
                p_own, own_cfg = _best_per_seed(j, "peri", depth, 1.0, OWN_INIT)
                ev = Evidence(0, 1, "", (p_own - pre1).dropna()).interval()
                line += (f" (tuned init); with the package's own init x{OWN_INIT:g} (best lr {own_cfg['lr']:g}) "
                         f"{ev[0]:+.2g} nats [{ev[1]:+.2g}, {ev[2]:+.2g}]")
        parts.append(line)
    if not per_depth:
        return Evidence(0, 0, "; ".join(needs) or "needs learned Peri-LN and another placement at one depth",
                        needs="equal tuning budget" if needs else "")
    seeds = pd.concat(per_depth, axis=1).mean(axis=1)  # per seed, mean over depths
    # a best trial at the grid's edge decides nothing about tuned placements: untested, numbers kept
    edge_needs = (f"learning rates that bracket each placement's best trial ({', '.join(at_edge)}: best at the "
                  "grid's edge)") if at_edge else ""
    return Evidence(holds, len(per_depth), "; ".join(parts + needs), seeds, needs=edge_needs)


def conditions(c: Claim, runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(condition, runs) pairs the claim is judged on: every run ("all"), or each value of its
    split key apart, largest first (judged values only)."""
    values = sorted(judged(runs)[c.split].unique(), reverse=True) if c.split else []
    if not values:
        return [("all", runs)]
    return [(f"{c.split}={v:g}", runs[runs[c.split] == v]) for v in values]


def _row(c: Claim, condition: str, ev: Evidence) -> dict:
    v, effect, lo, hi, n = decide(c, ev)
    numbers = ev.numbers
    if v == "untested" and n < c.min_seeds and ev.checked:
        numbers = f"{n} seed(s); the claim needs {c.min_seeds}. " + numbers
    if v == "mixed":  # on the claimed side over seeds, yet not every comparison: say how many
        numbers = f"{ev.holds}/{ev.checked} comparisons hold. " + numbers
    return {"claim": c.id, "condition": condition, "verdict": v, "effect": effect, "ci_low": lo, "ci_high": hi,
            "seeds": n, "holds": ev.holds, "checked": ev.checked}, numbers


FLOAT_KEYS = ("dt", "weight_decay", "lr", "init_scale")  # "1" reads back from a CSV as an integer


def _keyed(df: pd.DataFrame) -> pd.DataFrame:
    return df.astype({k: float for k in FLOAT_KEYS if k in df}).astype({"fold_dt": bool})


def reference_table(runs: pd.DataFrame, scale: pd.DataFrame | None) -> pd.DataFrame:
    """Per claim measured from a reference step (``from_reference``) and condition: the verdict
    with each probe step from the end of warmup to the one before the final as the reference
    (``scale``: the scale table, per run and probe step). ``default``: the step the claim uses."""
    cols = ["claim", "condition", "reference_step", "default", "verdict", "effect", "ci_low", "ci_high",
            "seeds", "holds", "checked"]
    if scale is None:
        return pd.DataFrame(columns=cols)
    runs, scale = _keyed(runs), _keyed(scale)
    rows = []
    for c in (c for c in CLAIMS.values() if c.from_reference):
        for condition, sub in conditions(c, runs):
            j = judged(sub)
            at = scale.merge(j[RUN_KEYS + ["warmup_step"]], on=RUN_KEYS)
            at = at[(at["step"] >= at["warmup_step"]) & (at["step"] < at.groupby(RUN_KEYS)["step"].transform("max"))]
            per_run = [set(g["step"]) for _, g in at.groupby(RUN_KEYS)]
            steps = sorted(set.intersection(*per_run)) if per_run else []  # steps every judged run has
            for step in steps:
                ref = scale[scale["step"] == step][RUN_KEYS + ["top_mean_abs"]].rename(columns={"top_mean_abs": "ref"})
                moved = sub.merge(ref, on=RUN_KEYS, how="left")
                moved = moved.assign(scale_warmup=moved["ref"], warmup_step=step,
                                     scale_growth_init=moved["ref"] / moved["scale_step0"],
                                     scale_growth_train=moved["scale_final"] / moved["ref"]).drop(columns="ref")
                row, _ = _row(c, condition, c.test(moved))
                rows.append({**row, "reference_step": int(step), "default": bool(step == j["warmup_step"].max())})
    return pd.DataFrame(rows, columns=cols)


def _by_reference(ref: pd.DataFrame, claim_id: str, condition: str) -> str:
    r = ref[(ref["claim"] == claim_id) & (ref["condition"] == condition)]
    if r.empty:
        return ""
    return "By reference step (claims_reference.csv): " + ", ".join(
        f"{s} {v}" for s, v in zip(r["reference_step"], r["verdict"])) + ". "


def claims_table(runs: pd.DataFrame, scale: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per claim and condition (a split claim has one per value of its split key):
    claim, condition, verdict, effect, ci_low, ci_high, seeds, holds, checked, statement,
    criterion, effect_is (what the effect number is), numbers. With ``scale`` (the scale table),
    a claim measured from a reference step also says its verdict from each later probe step."""
    ref = reference_table(runs, scale)
    rows = []
    for c in CLAIMS.values():
        for condition, sub in conditions(c, runs):
            row, numbers = _row(c, condition, c.test(sub))
            rows.append({**row, "statement": c.statement, "criterion": c.criterion, "effect_is": c.effect,
                         "numbers": _by_reference(ref, c.id, condition) + numbers})
    return pd.DataFrame(rows)


def demonstrations_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per declared instability demonstration (role ``instability_demo``): did it show
    what it was declared to (for Post-LN: vanishing adjoints and collapsed tokens)?"""
    d = runs[runs["role"] == DEMO]
    out = d[RUN_KEYS + ["final_val_loss", "learned", "adjoint_ratio"]].copy()
    out["data_over_entry_var"] = d["top_var_data"] / d["top_var_entry"]
    out["vanishing"] = d["adjoint_ratio"] < VANISHING_ADJOINT
    out["collapsed"] = out["data_over_entry_var"] < COLLAPSE_RATIO
    out["demonstrated"] = out["vanishing"] & out["collapsed"]
    out["criterion"] = (f"adjoint ratio ||p0||/||pK|| < {VANISHING_ADJOINT:g} and top-layer data-wise variance "
                        f"< {COLLAPSE_RATIO:g} of the entry-wise")
    return out.reset_index(drop=True)


def software_checks_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The package's regression checks on the study's own runs: each bound of docs/bounds.md
    holds on every run (the bounds hold for any weights, so every run counts, learned or not)."""
    r = runs[runs["bound_checks"] > 0]
    ok = int((r["violations"] == 0).sum())
    return pd.DataFrame([{
        "check": "zero_bound_violations", "result": "pass" if ok == len(r) and len(r) else ("fail" if len(r) else "untested"),
        "runs_ok": ok, "runs": len(r), "checks": int(r["bound_checks"].sum()), "violations": int(r["violations"].sum()),
        "numbers": (f"largest measured/bound after step 0 {r['max_check_ratio'].max():.3g}; largest final increment "
                    f"ratio {r['max_increment_ratio'].max():.3g}") if len(r) else "no run has bound checks",
        "what": "no measured value above its proven bound, over every row that can fail (kind 'check')"}])
