"""Screen an architecture before spending GPUs on it (``lnstab screen``; docs/screen.md).

One candidate (a placement and norm, or a user's own residual sub-layer ``module:Class``
implementing lnstab.model.Residual's interface) and the references Pre-, Peri- and Post-LN, at
the same size, each measured at initialisation and after a short training on the built-in
corpus (CPU minutes):

  per sub-layer   forward moments, max_t ||branch_t|| and its bound's slope (built-in
                  placements), adjoint norm ||p^(k)||, Jacobian-norm estimate of the branch;
  per model       a verdict table with the numbers behind each verdict:
    forward   collapses                   top data-wise variance < COLLAPSE_RATIO x entry-wise
              depends on the weights      the top-of-stream norm grows by more than
                                          WEIGHT_DEPENDENCE from every matrix of F scaled by
                                          WEIGHT_SCALE to the same scaled by WEIGHT_SCALE^2
              bounded independently of the weights   otherwise
    backward  vanishing / exploding / uniform: ||p^(0)|| / ||p^(K)|| below VANISHING_ADJOINT,
              above 1 / VANISHING_ADJOINT, or between (the thresholds of lnstab.claims).
  and whether the training learned (validation loss below the corpus's bigram baseline): the
  verdicts after training of a model that did not learn describe an untrained model.
"""
from __future__ import annotations

import copy
import importlib
import math
import sys
from pathlib import Path

import pandas as pd
import torch

from .claims import VANISHING_ADJOINT
from .config import RunConfig, load_config
from .model import GPT
from .probes import moments, point_of, probe
from .stats import COLLAPSE_RATIO

REFERENCES = ("pre", "peri", "post")
WEIGHT_SCALE = 1e3  # every matrix of every branch F multiplied by this, then by its square ...
WEIGHT_DEPENDENCE = 2.0  # ... and the top-of-stream mean norm growing by more in between: growth depends on the weights
# the screen's model and training unless the config says otherwise: the default study's width
# and learning rate (Pre- and Peri-LN's), 8 blocks, 600 steps (about 30 s per architecture on
# one CPU core)
SCREEN_BASE = {
    "model": {"n_layer": 8, "d_model": 32, "n_head": 4, "block_size": 32},
    "train": {"steps": 600, "batch_size": 16, "lr": 1e-2, "warmup_steps": 30, "eval_interval": 100,
              "eval_batches": 4, "ckpt_interval": 0, "log_interval": 100},
    "probe": {"enabled": False, "batch_size": 8, "jacobian_iters": 16},
}


def screen_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """SCREEN_BASE, then the YAML file at ``path``, then ``key=value`` overrides."""
    import yaml

    base = copy.deepcopy(SCREEN_BASE)
    if path is not None:
        text = Path(path).read_text(encoding="utf-8")
        for section, values in (yaml.safe_load(text) or {}).items():
            if isinstance(values, dict):
                base.setdefault(section, {}).update(values)
            else:
                base[section] = values
    return load_config(None, overrides, base=base)


def load_block(spec: str) -> type:
    """'package.module:Class' -> the class (a residual sub-layer: lnstab.model.Residual's interface)."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"--block: expected module:Class, got {spec!r}")
    sys.path.insert(0, str(Path.cwd()))  # a module next to where the command runs
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"--block {spec}: {type(e).__name__}: {e}") from None
    for attr in ("branch", "forward"):
        if not callable(getattr(cls, attr, None)):
            raise ValueError(f"--block {spec}: the class has no method {attr}() (lnstab.model.Residual's interface)")
    return cls


@torch.no_grad()
def top_norm(model: GPT, idx: torch.Tensor) -> float:
    hidden: list[torch.Tensor] = []
    model(idx, hidden=hidden)
    return moments(hidden[-1])["mean_norm"]


def weight_dependence(model: GPT, idx: torch.Tensor, scale: float = WEIGHT_SCALE) -> float:
    """Top-of-stream mean ||x|| with every matrix of every branch F scaled by scale^2, over the
    same scaled by scale: about 1 where the growth stops following F's weights once they are
    large (a norm on the branch or the sum, or any saturating branch), about scale^2 where the
    step adds F's output as it is (two matrices per branch). Large factors, so that a saturating
    branch (tanh, a norm in its eps regime) has saturated at both."""
    def top_at(factor):
        scaled = copy.deepcopy(model)
        with torch.no_grad():
            for name, p in scaled.named_parameters():
                if ".f." in name and p.ndim == 2:
                    p.mul_(factor)
        return top_norm(scaled, idx)

    ratio = top_at(scale ** 2) / top_at(scale)
    return ratio if math.isfinite(ratio) else math.inf  # an overflow: the growth follows the weights


def classify(data_over_entry_var: float, weight_dependence: float, adjoint_ratio: float) -> tuple[str, str]:
    """(forward verdict, backward verdict) from the three numbers behind them (module docstring)."""
    if data_over_entry_var < COLLAPSE_RATIO:
        forward = "collapses"
    elif weight_dependence > WEIGHT_DEPENDENCE:
        forward = "depends on the weights"
    else:
        forward = "bounded independently of the weights"
    if adjoint_ratio < VANISHING_ADJOINT:
        backward = "vanishing"
    elif adjoint_ratio > 1 / VANISHING_ADJOINT:
        backward = "exploding"
    else:
        backward = "uniform"
    return forward, backward


def measure(name: str, model: GPT, batch, state: str, cfg: RunConfig, builtin: bool) -> tuple[list[dict], dict]:
    """Per-sub-layer rows and the verdict row of one model in one state (init or trained)."""
    from .bounds import forward_bounds

    idx, targets = batch
    res = probe(model, idx, targets, cfg.probe.jacobian_iters, cfg.probe.jacobian_tol)
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
    dependence = weight_dependence(model, idx)
    ratio = adj[0] / adj[K] if adj[K] > 0 else math.nan
    forward, backward = classify(top["var_data"] / top["var_entry"], dependence, ratio)
    verdict = {"architecture": name, "state": state, "forward": forward, "backward": backward,
               "growth": top["mean_norm"] / res["moments"][0]["mean_norm"],
               "weight_dependence": dependence, "data_over_entry_var": top["var_data"] / top["var_entry"],
               "adjoint_ratio": ratio, "loss": res["loss"]}
    return rows, verdict


def screen_one(name: str, cfg: RunConfig, folder: Path, residual: type | None = None, verbose: bool = True):
    """Train one architecture for cfg.train.steps into ``folder``; measure it before and after."""
    from .train import Run

    run = Run(cfg, folder, verbose=False, residual=residual)
    batch = tuple(t.to(run.device) for t in run.probe_batch)
    rows, init = measure(name, run.model, batch, "init", cfg, residual is None)
    summary = run.fit()
    more, trained = measure(name, run.model, batch, "trained", cfg, residual is None)
    trained["final_val_loss"] = summary["final_val_loss"]
    if verbose:
        print(f"screen {name}: {trained['forward']}, backward {trained['backward']} "
              f"(val loss {summary['final_val_loss']:.3f})", file=sys.stderr, flush=True)
    return rows + more, [init, trained]


def corpus_bigram(cfg: RunConfig) -> float:
    from .baselines import cross_entropies
    from .data import load_corpus

    c = load_corpus(cfg.data, cfg.model.vocab_size)
    return cross_entropies(c.train, c.val, c.vocab_size)["bigram_nats"]


def screen(cfg: RunConfig, folder: str | Path, block: str | None = None, verbose: bool = True
           ) -> dict[str, pd.DataFrame]:
    """The candidate of ``cfg`` (or ``block``) and the references, each trained into
    folder/runs/<name>; returns {'sublayers', 'verdicts'}."""
    folder = Path(folder)
    residual = load_block(block) if block else None
    name = block or (cfg.model.placement + ("" if cfg.model.norm == "layernorm" else f"+{cfg.model.norm}"))
    arches = [(name, cfg, residual)]
    for ref in REFERENCES:
        if residual is None and ref == cfg.model.placement and cfg.model.norm == "layernorm":
            continue
        ref_cfg = copy.deepcopy(cfg)
        ref_cfg.model.placement, ref_cfg.model.norm = ref, "layernorm"
        arches.append((ref, ref_cfg, None))
    rows, verdicts = [], []
    for arch, c, res in arches:
        r, v = screen_one(arch, c, folder / "runs" / arch.replace(":", "_"), res, verbose)
        rows += r
        verdicts += v
    bigram = corpus_bigram(cfg)
    for v in verdicts:
        v["role"] = "candidate" if v["architecture"] == name else "reference"
        # after training: below the corpus's bigram baseline, or it tested nothing (docs/claims.md)
        v["learned"] = bool(v.get("final_val_loss", math.nan) < bigram) if v["state"] == "trained" else None
        v["bigram_nats"] = bigram
    return {"sublayers": pd.DataFrame(rows), "verdicts": pd.DataFrame(verdicts)}


def verdict_text(verdicts: pd.DataFrame) -> str:
    shown = verdicts[["architecture", "role", "state", "forward", "backward", "growth", "weight_dependence",
                      "data_over_entry_var", "adjoint_ratio", "final_val_loss", "learned"]]
    return shown.to_markdown(index=False, floatfmt=".3g")
