"""The screen's measurements and verdicts (the package docstring says what they are)."""
from __future__ import annotations

import copy
import importlib
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..config import RunConfig
from ..model import GPT
from ..probes import moments, point_of, probe
from ..stats import COLLAPSE_RATIO, depth_exponent
from .setup import LR_NOT_USED, SCREEN_BASE, SCREEN_LRS, screen_config, screen_depths  # noqa: F401

REFERENCES = ("pre", "peri", "post")
WEIGHT_SCALE = 1e3  # every matrix of every branch F multiplied by this, then by its square
# per sub-layer: a factor 1.25 compounds to 1e3 over 16 blocks (32 sub-layers) and to 2e9 over
# GPT-2 XL's 96; no polynomial growth of degree < 2.6 reaches it between 4 and 8 blocks
EXPONENTIAL_FACTOR = 1.25
LINEAR_EXPONENT = 1.0  # depth exponent a at most this: at most linear (Peri-LN's bound, docs/bounds.md F2)
# per sub-layer adjoint factor outside [1/w, w]: w = 10^(3/16) is a factor 1e3 over the screen's
# default 8 blocks (16 sub-layers), the window of the claims' VANISHING_ADJOINT
ADJOINT_STEP_WINDOW = 10 ** (3 / 16)


def load_block(spec: str) -> type:
    """'package.module:Class' -> the class (a residual sub-layer: lnstab.model.Residual's interface).
    Whatever goes wrong while importing the user's module is one line naming it (ValueError)."""
    module, _, name = spec.partition(":")
    if not module or not name or module.startswith("."):
        raise ValueError(f"--block: expected module:Class with an absolute module name, got {spec!r}")
    sys.path.insert(0, str(Path.cwd()))  # a module next to where the command runs
    try:
        cls = getattr(importlib.import_module(module), name)
    except Exception as e:  # the user's module: a missing name, a syntax error, an error at import
        cause = str(e).splitlines()[0] if str(e) else ""
        raise ValueError(f"--block {spec}: cannot import it ({type(e).__name__}: {cause[:300]})") from None
    if not isinstance(cls, type):
        raise ValueError(f"--block {spec}: {name} is not a class")
    for attr in ("branch", "forward"):
        if not callable(getattr(cls, attr, None)):
            raise ValueError(f"--block {spec}: the class has no method {attr}() (lnstab.model.Residual's interface)")
    return cls


def check_block(cls: type, cfg: RunConfig, spec: str) -> None:
    """Build a two-block GPT of ``cls`` and run one forward and backward pass on it: a block that
    cannot be built as ``Class(f, cfg, placement)``, or whose step does not map a (batch, tokens,
    d_model) stream to one of that shape, stops here with one line, before any training."""
    import torch

    from ..model import GPT

    small = copy.deepcopy(cfg.model)
    small.n_layer, small.vocab_size = 2, small.vocab_size or 16
    try:
        model = GPT(small, cls)
        idx = torch.zeros(1, min(4, small.block_size), dtype=torch.long)
        _, loss = model(idx, idx)
        loss.backward()
    except Exception as e:  # the user's code: any failure is the block's
        cause = str(e).splitlines()[0] if str(e) else ""
        raise ValueError(f"--block {spec}: does not work as lnstab.model.Residual's interface requires "
                         f"({type(e).__name__}: {cause})") from None
    missing = sorted({a for r in model.sublayers() for a in ("f", "dt", "placement") if not hasattr(r, a)})
    if missing:
        raise ValueError(f"--block {spec}: its sub-layers have no {', '.join(missing)} (lnstab.model.Residual's "
                         "interface: the probes and the verdicts read them)")


@torch.no_grad()
def top_norm(model: GPT, idx: torch.Tensor) -> float:
    hidden: list[torch.Tensor] = []
    model(idx, hidden=hidden)
    return moments(hidden[-1])["mean_norm"]


def weight_homogeneity(model: GPT, idx: torch.Tensor, scale: float = WEIGHT_SCALE) -> float:
    """Top-of-stream mean ||x|| with every matrix of every branch F scaled by scale^2, over the
    same scaled by scale: about 1 where the growth stops following F's weights once they are
    large (a norm on the branch or the sum, or any saturating branch), about scale^2 where the
    step adds F's output as it is (two matrices per branch). A property of the branch, not a
    verdict on stability: a block that grows exponentially over depth whatever its weights has 1."""
    def top_at(factor):
        scaled = copy.deepcopy(model)
        with torch.no_grad():
            for name, p in scaled.named_parameters():
                if ".f." in name and p.ndim == 2:
                    p.mul_(factor)
        return top_norm(scaled, idx)

    ratio = top_at(scale ** 2) / top_at(scale)
    return ratio if math.isfinite(ratio) else math.inf  # an overflow: the growth follows the weights


def depth_fit(depths: list[int], scale: list[float]) -> dict[str, float]:
    """From the top-of-stream mean|x| at each depth (the claims' statistic, ``scale_final``):
    ``depth_exponent`` a of mean|x| ~ L^a (stats.depth_exponent, the claims' fit) and
    ``step_factor``, the per-sub-layer factor (S(L) / S(L/2))^(1 / (K - K/2)) between the two
    largest depths."""
    L, S = np.asarray(depths, float), np.asarray(scale, float)
    if len(L) < 3 or not np.all(np.isfinite(S)) or np.any(S <= 0):
        return {"depth_exponent": math.nan, "step_factor": math.nan}
    return {"depth_exponent": depth_exponent(L, S),
            "step_factor": float((S[-1] / S[-2]) ** (1 / (2 * (L[-1] - L[-2]))))}


def within_sequence_var(x: torch.Tensor) -> float:
    """The variance over the positions of each sequence of x (B, T, d), averaged over sequences
    and entries (biased, like the probes' moments)."""
    return x.double().var(dim=1, unbiased=False).mean().item()


def classify(finite: bool, data_over_entry_var: float, step_factor: float, depth_exponent: float,
             adjoint_step: float, within_over_entry_var: float = math.nan) -> tuple[str, str]:
    """(forward verdict, backward verdict) from the numbers behind them (module docstring)."""
    if not finite:
        return "diverges", "diverges"
    if data_over_entry_var < COLLAPSE_RATIO:
        forward = "collapses"
    elif within_over_entry_var < COLLAPSE_RATIO:  # NaN (not measured) compares False
        forward = "collapses within sequences"
    elif step_factor >= EXPONENTIAL_FACTOR:
        forward = "grows exponentially"
    elif depth_exponent > LINEAR_EXPONENT:
        forward = "grows faster than linearly"
    else:
        forward = "at most linear"
    if adjoint_step != adjoint_step:  # NaN: the gradients are not finite
        backward = "diverges"
    elif adjoint_step < 1 / ADJOINT_STEP_WINDOW:
        backward = "vanishing"
    elif adjoint_step > ADJOINT_STEP_WINDOW:
        backward = "exploding"
    else:
        backward = "uniform"
    return forward, backward


def measure(name: str, model: GPT, batch, state: str, cfg: RunConfig, builtin: bool) -> tuple[list[dict], dict]:
    """Per-sub-layer rows and the numbers of one model in one state; a model whose hidden states,
    loss or Jacobian estimates are not finite gives no rows and ``finite`` False."""
    from ..bounds import forward_bounds

    idx, targets = batch
    try:
        res = probe(model, idx, targets, cfg.probe.jacobian_iters, cfg.probe.jacobian_tol)
    except (RuntimeError, torch.linalg.LinAlgError):  # a non-finite stream breaks the Jacobian estimate
        res = None
    finite = res is not None and all(torch.isfinite(h).all().item() for h in res["hidden"]) \
        and math.isfinite(res["loss"])
    if not finite:
        return [], {"finite": False, "top_mean_abs": math.nan, "data_over_entry_var": math.nan,
                    "within_over_entry_var": math.nan, "adjoint_ratio": math.nan, "weight_homogeneity": math.nan,
                    "loss": math.nan}
    slopes = forward_bounds(model, res["hidden"][0], res["weight_norms"])["slope"] if builtin else None
    adj = res["adjoint"]
    K = len(adj) - 1
    rows = []
    for k, m in enumerate(res["moments"]):
        point, layer = point_of(k)
        rows.append({"architecture": name, "state": state, "sublayer": k, "point": point, "layer": layer,
                     "mean_norm": m["mean_norm"], "var_entry": m["var_entry"], "var_data": m["var_data"],
                     "adjoint_norm": adj[k], "adjoint_over_top": adj[k] / adj[K] if adj[K] > 0 else math.nan,
                     "branch_norm_max": res["branch_norm_max"][k - 1] if k else math.nan,
                     "slope_bound": float(slopes[k]) if slopes is not None and k else math.nan,
                     "jac_branch_est": res["jac_branch"][k - 1] if k and res["jac_branch"] else math.nan})
    top = res["moments"][-1]
    return rows, {"finite": True, "top_mean_abs": top["mean_abs"],
                  "data_over_entry_var": top["var_data"] / top["var_entry"],
                  "within_over_entry_var": within_sequence_var(res["hidden"][-1]) / top["var_entry"],
                  "adjoint_ratio": adj[0] / adj[K] if adj[K] > 0 else math.nan,
                  "weight_homogeneity": weight_homogeneity(model, idx), "loss": res["loss"]}


def _at_depth(cfg: RunConfig, n_layer: int, lr: float | None = None) -> RunConfig:
    c = copy.deepcopy(cfg)
    c.model.n_layer = n_layer
    if lr is not None:
        c.train.lr = lr
    return c


def screen_one(name: str, cfg: RunConfig, folder: Path, residual: type | None = None, verbose: bool = True,
               lrs=SCREEN_LRS):
    """One architecture at each depth of ``screen_depths``: measured at initialisation, trained
    for cfg.train.steps at each of ``lrs`` into folder/L<depth>-lr<lr>, measured again. Returns
    (sub-layer rows of the deepest model: at init, and after training with column ``lr`` for
    each learning rate; the numbers per state, depth and learning rate; the trials). A built-in
    architecture's learning rates at one depth train together (lnstab.groups: each trial the same
    bits as alone in a group); a block of the user's own trains one trial at a time."""
    from ..groups import TrainingGroup
    from ..train import Run

    depths = screen_depths(cfg.model.n_layer)
    rows, numbers, trials = [], [], []
    for depth in depths:
        runs = [Run(_at_depth(cfg, depth, lr), folder / f"L{depth}-lr{lr:g}", verbose=False, residual=residual)
                for lr in lrs]
        c = runs[0].cfg
        batch = tuple(t.to(runs[0].device) for t in runs[0].probe_batch)
        # before training: the initialisation does not depend on the learning rate
        r, init = measure(name, runs[0].model, batch, "init", c, residual is None)
        numbers.append({"state": "init", "n_layer": depth, **init})
        rows += r if depth == depths[-1] else []
        if residual is None:
            summaries = TrainingGroup(runs, f"{name}-L{depth}", verbose=False).fit()
        else:
            summaries = [run.fit() for run in runs]
        for lr, run, summary in zip(lrs, runs, summaries):
            c = run.cfg
            r, trained = measure(name, run.model, batch, "trained", c, residual is None)
            loss = summary["final_val_loss"]
            ok = summary["status"] == "completed" and trained["finite"] and math.isfinite(loss)
            trials.append({"architecture": name, "n_layer": depth, "lr": lr, "status": summary["status"],
                           "final_val_loss": loss if ok else math.nan})
            trained.update(finite=ok, lr=lr, final_val_loss=loss if ok else math.nan)
            numbers.append({"state": "trained", "n_layer": depth, **trained})
            rows += [{**row, "lr": lr} for row in r] if depth == depths[-1] else []
    if verbose:
        print(f"screen {name}: " + "; ".join(f"L{t['n_layer']} lr {t['lr']:g} {t['final_val_loss']:.3f}"
                                             for t in trials), file=sys.stderr, flush=True)
    return rows, numbers, trials


def _state_verdict(per: list[dict]) -> dict:
    """The verdict and its numbers from one state's numbers at every depth (one training recipe)."""
    per = sorted(per, key=lambda n: n["n_layer"])
    deepest = per[-1]
    finite = all(n["finite"] for n in per)
    fit = depth_fit([n["n_layer"] for n in per], [n["top_mean_abs"] for n in per]) if finite else \
        {"depth_exponent": math.nan, "step_factor": math.nan}
    K = 2 * deepest["n_layer"]
    ratio = deepest["adjoint_ratio"]
    step_adjoint = ratio ** (1 / K) if ratio == ratio and ratio >= 0 else math.nan
    forward, backward = classify(finite, deepest["data_over_entry_var"], fit["step_factor"],
                                 fit["depth_exponent"], step_adjoint, deepest["within_over_entry_var"])
    return {"forward": forward, "backward": backward, "depths": ",".join(str(n["n_layer"]) for n in per), **fit,
            "top_mean_abs": deepest["top_mean_abs"], "data_over_entry_var": deepest["data_over_entry_var"],
            "within_over_entry_var": deepest["within_over_entry_var"], "adjoint_ratio": ratio,
            "adjoint_step_factor": step_adjoint, "weight_homogeneity": deepest["weight_homogeneity"],
            "loss": deepest["loss"]}


def pick_lr(per_lr: dict[float, list[dict]], bigram: float) -> tuple[float, str]:
    """(learning rate, why): the lowest mean validation loss over depths among the rates that
    learn (loss below ``bigram``) at every depth; without one, the lowest mean loss, said so."""
    def mean_loss(lr):
        v = [n["final_val_loss"] for n in per_lr[lr]]
        return float(np.mean(v)) if all(x == x for x in v) else math.inf

    learns = [lr for lr, per in per_lr.items() if all(n["final_val_loss"] < bigram for n in per)]
    if learns:
        return min(learns, key=mean_loss), "learns at every depth"
    return min(per_lr, key=mean_loss), "no learning rate learns at every depth: the lowest mean loss"


def verdict_rows(name: str, numbers: list[dict], trials: list[dict], bigram: float = math.inf) -> list[dict]:
    """One verdict row per state (init, trained) from the numbers at every depth; after training,
    per learning rate (``per_lr``) and the verdict of the one ``pick_lr`` picks."""
    init = [n for n in numbers if n["state"] == "init"]
    out = [{"architecture": name, "state": "init", **_state_verdict(init)}]
    per_lr: dict[float, list[dict]] = {}
    for n in numbers:
        if n["state"] == "trained":
            per_lr.setdefault(n["lr"], []).append(n)
    lr, why = pick_lr(per_lr, bigram)
    deepest = max(per_lr[lr], key=lambda n: n["n_layer"])
    verdicts = {r: _state_verdict(per) for r, per in per_lr.items()}
    out.append({"architecture": name, "state": "trained", **verdicts[lr], "best_lr": lr, "lr_rule": why,
                "final_val_loss": deepest["final_val_loss"],
                "per_lr": "; ".join(
                    f"lr {r:g}: {v['forward']} (a {v['depth_exponent']:.2f}), {v['backward']}; learned at "
                    f"{sum(n['final_val_loss'] < bigram for n in per_lr[r])}/{len(per_lr[r])} depths"
                    for r, v in sorted(verdicts.items())),
                "trials": "; ".join(f"L{t['n_layer']} lr {t['lr']:g}: " + (
                    f"{t['final_val_loss']:.3f}" if t["final_val_loss"] == t["final_val_loss"] else t["status"])
                    for t in trials)})
    return out


def corpus_bigram(cfg: RunConfig) -> float:
    from ..baselines import cross_entropies
    from ..data import load_corpus

    c = load_corpus(cfg.data, cfg.model.vocab_size)
    return cross_entropies(c.train, c.val, c.vocab_size)["bigram_nats"]


def screen(cfg: RunConfig, folder: str | Path, block: str | None = None, verbose: bool = True,
           lrs=SCREEN_LRS) -> dict[str, pd.DataFrame]:
    """The candidate of ``cfg`` (or ``block``) and the references, each trained into
    folder/runs/<name>/; returns {'sublayers', 'verdicts'}."""
    folder = Path(folder)
    screen_depths(cfg.model.n_layer)  # a bad depth stops before any training
    residual = load_block(block) if block else None
    if residual is not None:
        check_block(residual, cfg, block)
    name = block or (cfg.model.placement + ("" if cfg.model.norm == "layernorm" else f"+{cfg.model.norm}"))
    arches = [(name, cfg, residual)]
    for ref in REFERENCES:
        if residual is None and ref == cfg.model.placement and cfg.model.norm == "layernorm":
            continue
        ref_cfg = copy.deepcopy(cfg)
        ref_cfg.model.placement, ref_cfg.model.norm = ref, "layernorm"
        arches.append((ref, ref_cfg, None))
    rows, verdicts = [], []
    bigram = corpus_bigram(cfg)
    for arch, c, res in arches:
        r, numbers, trials = screen_one(arch, c, folder / "runs" / arch.replace(":", "_"), res, verbose, lrs)
        v = verdict_rows(arch, numbers, trials, bigram)
        picked = v[-1]["best_lr"]  # the deepest model's rows after training at the picked rate
        rows += [x for x in r if x["state"] == "init" or x["lr"] == picked]
        verdicts += v
    for v in verdicts:
        v["role"] = "candidate" if v["architecture"] == name else "reference"
        # after training: below the corpus's bigram baseline, or it tested nothing (docs/claims.md)
        v["learned"] = bool(v.get("final_val_loss", math.nan) < bigram) if v["state"] == "trained" else None
        v["bigram_nats"] = bigram
    return {"sublayers": pd.DataFrame(rows), "verdicts": pd.DataFrame(verdicts)}


def verdict_text(verdicts: pd.DataFrame) -> str:
    shown = verdicts[["architecture", "role", "state", "forward", "backward", "depth_exponent", "step_factor",
                      "adjoint_step_factor", "weight_homogeneity", "data_over_entry_var", "final_val_loss",
                      "learned"]]
    return shown.to_markdown(index=False, floatfmt=".3g")
