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
                                          WEIGHT_DEPENDENCE when every matrix of F is scaled
                                          by WEIGHT_SCALE
              bounded independently of the weights   otherwise
    backward  vanishing / exploding / uniform: ||p^(0)|| / ||p^(K)|| below VANISHING_ADJOINT,
              above 1 / VANISHING_ADJOINT, or between (the thresholds of lnstab.claims).
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
WEIGHT_SCALE = 10.0  # every matrix of every branch F multiplied by this ...
WEIGHT_DEPENDENCE = 2.0  # ... and the top-of-stream mean norm growing by more: growth depends on the weights
# the screen's model and training unless the config says otherwise: the default study's width
# and learning rate, 8 blocks, 300 steps (about 15 s per architecture on one CPU core)
SCREEN_BASE = {
    "model": {"n_layer": 8, "d_model": 32, "n_head": 4, "block_size": 32},
    "train": {"steps": 300, "batch_size": 16, "lr": 3e-3, "warmup_steps": 30, "eval_interval": 100,
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
    """Top-of-stream mean ||x|| with every matrix of every branch F scaled by ``scale``, over the
    same without: about 1 where a norm bounds the growth whatever F's weights are."""
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in scaled.named_parameters():
            if ".f." in name and p.ndim == 2:
                p.mul_(scale)
    return top_norm(scaled, idx) / top_norm(model, idx)


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
    collapsed = top["var_data"] < COLLAPSE_RATIO * top["var_entry"]
    forward = ("collapses" if collapsed else "depends on the weights" if dependence > WEIGHT_DEPENDENCE
               else "bounded independently of the weights")
    backward = ("vanishing" if ratio < VANISHING_ADJOINT else "exploding" if ratio > 1 / VANISHING_ADJOINT
                else "uniform")
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
    for v in verdicts:
        v["role"] = "candidate" if v["architecture"] == name else "reference"
    return {"sublayers": pd.DataFrame(rows), "verdicts": pd.DataFrame(verdicts)}


def verdict_text(verdicts: pd.DataFrame) -> str:
    shown = verdicts[["architecture", "role", "state", "forward", "backward", "growth", "weight_dependence",
                      "data_over_entry_var", "adjoint_ratio", "final_val_loss"]]
    return shown.to_markdown(index=False, floatfmt=".3g")
