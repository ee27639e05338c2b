"""What the paper is about, measured on a real model's stream: per point and per group of
sequences (all; those that start with the model's BOS token; those that do not), the moments of
Figure 1, robust per-token statistics, the massive activation with where it sits, the adjoint
norm; per model the depth statistics in the claims' vocabulary, and each norm's gain over depth.

Depth statistics, within one model (the study fits across models of several depths; a real model
has one depth, so its growth is read along its own stream, sub-layer k = 1..K):

  depth_exponent   a of mean|x^(k)| ~ k^a, least squares in log-log, fitted per sequence; its
                   mean and a 95% interval over the group's sequences (Student t)
  half_factor      per-sub-layer factor of a log-linear fit over the second half of the stream
                   (``stats.depth_shape``, the study's own)
  adjoint_step     (||p^(0)|| / ||p^(K)||)^(1/K), the screen's per-sub-layer adjoint factor
  forward verdict  collapses (top data-wise variance < COLLAPSE_RATIO x entry-wise), grows
                   exponentially (half_factor >= EXPONENTIAL_FACTOR), faster than linear (the
                   interval of a above 1), at most linear (below or at 1), else undecided
  backward verdict vanishing / uniform / exploding by ADJOINT_STEP_WINDOW, as the screen
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..probes import point_of, stacked_moments
from ..screen import ADJOINT_STEP_WINDOW, EXPONENTIAL_FACTOR, LINEAR_EXPONENT
from ..stats import COLLAPSE_RATIO, depth_shape

STREAM_COLUMNS = ["sequences", "point", "layer", "sublayer", "quantity", "value"]


def groups(n_sequences: int, bos: bool) -> dict[str, list[int]]:
    """Sequence indices of each group: the batch is the windows, then (with a BOS token) the same
    windows behind BOS, so the two halves differ only by the first token."""
    if not bos:
        return {"all": list(range(n_sequences))}
    half = n_sequences // 2
    return {"all": list(range(n_sequences)), "no_bos": list(range(half)), "bos": list(range(half, n_sequences))}


def point_rows(x: torch.Tensor, adjoint: torch.Tensor | None, ids: torch.Tensor, k: int, point: str | None = None
               ) -> list[dict]:
    """Rows of one point x (B, T, d) of one group: the moments and the largest |x| (``moments``),
    median and top token norm, where the largest |x| sits (position, token id, dimension), the largest dimension's max |x| over
    the median dimension's, and the adjoint norm."""
    name, layer = point_of(k)
    name = point or name
    rows = [{"point": name, "layer": layer, "sublayer": k, "quantity": q, "value": v}
            for q, v in stacked_moments([x])[0].items()]
    xd = x.detach().double()
    norms = xd.norm(dim=-1).flatten()
    absx = xd.abs()
    flat = int(absx.argmax())
    B, T, d = x.shape
    b, t, j = flat // (T * d), (flat // d) % T, flat % d
    per_dim = absx.reshape(-1, d).amax(0)
    values = {"median_token_norm": norms.median().item(), "top_token_norm": norms.max().item(),
              "max_abs_position": t, "max_abs_token": int(ids[b, t]),
              "max_abs_dim": j, "dim_max_over_median": (per_dim.max() / per_dim.median()).item()}
    if adjoint is not None:
        values["adjoint_norm"] = adjoint.double().norm().item()
    return rows + [{"point": name, "layer": layer, "sublayer": k, "quantity": q, "value": float(v)}
                   for q, v in values.items()]


def stream_table_rows(result: dict, ids: torch.Tensor, bos: bool) -> list[dict]:
    """Every group's rows at every point of ``probe_hooked``'s result (sums as point ``sum``)."""
    rows = []
    sums_k = [k for k in result["sublayers"][1:]]  # a sum sits under the norm that makes x^(k)
    for name, idx in groups(ids.shape[0], bos).items():
        for k, h, a in zip(result["sublayers"], result["hidden"], result["adjoints"]):
            rows += [{"sequences": name, **r} for r in point_rows(h[idx], a[idx], ids[idx], k)]
        for k, s in zip(sums_k, result["sums"]):
            rows += [{"sequences": name, **r} for r in point_rows(s[idx], None, ids[idx], k, point="sum")]
    return rows


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of a Student-t interval over the values (NaN bounds below two values)."""
    from scipy.stats import t

    v = np.asarray(values, float)
    mean = float(v.mean())
    if len(v) < 2:
        return mean, math.nan, math.nan
    half = float(t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return mean, mean - half, mean + half


def depth_statistics(result: dict, idx: list[int]) -> dict:
    """The module doc's depth statistics and verdicts of one group of sequences."""
    ks = np.asarray(result["sublayers"][1:], float)
    per_seq = np.stack([h[idx].double().abs().mean((1, 2)).numpy() for h in result["hidden"]], 1)  # (n, K+1)
    profiles = per_seq[:, 1:]
    ok = np.all(np.isfinite(profiles)) and np.all(profiles > 0)
    exps = ([float(np.polynomial.polynomial.polyfit(np.log(ks), np.log(p), 1)[1]) for p in profiles]
            if ok and len(ks) >= 2 else [math.nan])
    a, low, high = t_interval(np.asarray(exps))
    mean_profile = per_seq.mean(0)
    shape = depth_shape(mean_profile)
    adj = [a_[idx].double().norm().item() for a_ in result["adjoints"]]
    K = len(adj) - 1
    adjoint_step = (adj[0] / adj[-1]) ** (1 / K) if adj[-1] > 0 and K > 0 else math.nan
    top = stacked_moments([result["hidden"][-1][idx]])[0]
    data_over_entry = top["var_data"] / top["var_entry"] if top["var_entry"] > 0 else math.nan
    if not ok:
        forward = "diverges"
    elif data_over_entry < COLLAPSE_RATIO:
        forward = "collapses"
    elif shape["half_factor"] >= EXPONENTIAL_FACTOR:
        forward = "grows exponentially"
    elif low > LINEAR_EXPONENT:
        forward = "grows faster than linearly"
    elif high <= LINEAR_EXPONENT:
        forward = "at most linear"
    else:
        forward = "undecided"
    backward = ("diverges" if not math.isfinite(adjoint_step) else "vanishing" if adjoint_step < 1 / ADJOINT_STEP_WINDOW
                else "exploding" if adjoint_step > ADJOINT_STEP_WINDOW else "uniform")
    return {"n_sequences": len(idx), "depth_exponent": a, "depth_exponent_low": low, "depth_exponent_high": high,
            "half_factor": shape["half_factor"], "shape_ratio": shape["shape_ratio"],
            "massive_share": shape["massive_share"], "growth_first_block": mean_profile[min(2, K)] / mean_profile[0],
            "adjoint_step": adjoint_step, "data_over_entry_var": data_over_entry,
            "forward": forward, "backward": backward}


def gain_rows(hf_model, fam) -> list[dict]:
    """Each norm's effective gain (the family's gain_offset + weight) in each layer: mean, rms and
    max |g|, with its role: ``step`` (the norms the family's bound reads: Peri-LN's output norms,
    BERT's LayerNorms on the sums), ``qk`` (QK-norm), ``input`` (the others); the embedding and
    final norms as layers -1 and L."""
    layers = hf_model.get_submodule(fam.layers)
    rows = []

    def add(layer, name, module):
        g = module.weight.detach().double() + fam.gain_offset
        role = "step" if name in fam.step_norms else "qk" if name.split(".")[-1] in ("q_norm", "k_norm") else "input"
        rows.append({"layer": layer, "norm": name, "role": role, "gain_mean": g.mean().item(),
                     "gain_rms": (g.norm() / math.sqrt(g.numel())).item(), "gain_max_abs": g.abs().max().item()})

    def is_norm(m):
        return "norm" in type(m).__name__.lower() and getattr(m, "weight", None) is not None and m.weight.ndim == 1

    for i, layer in enumerate(layers):
        for name, m in layer.named_modules():
            if name and is_norm(m):
                add(i, name, m)
    for name, m in hf_model.named_modules():
        if not name.startswith(fam.layers) and is_norm(m):
            add(len(layers) if "final" in name or name.endswith(("norm", "ln_f")) else -1, name, m)
    return rows
