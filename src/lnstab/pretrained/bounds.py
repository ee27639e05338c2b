"""The bounds of docs/bounds.md on a real model's stream, from its own weights ("Real models").

Pre-LN with a gated MLP and grouped-query attention (Llama, Mistral, Qwen: F10): the increment of a
sub-layer is bounded per token by its input norm's gain and its matrices' norms (attention: the
value and output maps, whatever the rotary embedding and QK-norm do to queries and keys; MLP:
||W_down|| times the gate's and up maps' norms, the activation bounded by |act(a)| <= |a|), and the
stream by Minkowski from the measured x^(0); each branch's largest per-token norm is checked
against its own slope (measured as x^(k) - x^(k-1)).
Peri-LN (Gemma 2/3's sandwich) and OLMo 2's output norm: every sub-layer adds a norm's output, so
F2 bounds x^(k) by x^(0)'s measured moments plus the output norms' slopes, with the family's gain
(Gemma's RMSNorm: 1 + w). Post-LN (BERT): every x^(k) is a LayerNorm's output (F3), bounded by
that norm alone: rows ``ln_identity``, reported, not counted as checks. The measured side is the
model's own float32 stream (its rounding allowance is float32's).
"""
from __future__ import annotations

import math

import torch

from ..bounds import (FORWARD_QUANTITIES, _ln_slopes, _row, branch_gain, cumulative_bounds, increment_slopes,
                      roundoff_allowance)
from ..probes import point_of, spectral_norms, stacked_moments
from .hooked import Family

# activations with |act(a)| <= |a| (a times a number in [0, 1]): the gated MLP's bound reads them so
BOUNDED_ACTIVATIONS = ("silu", "gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_python")


def _max_row_norm(w: torch.Tensor) -> float:
    return w.detach().double().norm(dim=1).max().item()


def _bias(lin) -> torch.Tensor | None:
    return None if lin.bias is None else lin.bias.detach().double()


def gated_pre_slopes(hf_model, fam: Family, d: int) -> list[float] | None:
    """Per sub-layer, the per-token bound c_k on ||F_k(u)|| (F10), or None where the family's
    activation is not one of BOUNDED_ACTIVATIONS or a branch has biases the proof leaves out."""
    config = hf_model.config
    if getattr(config, "hidden_act", None) not in BOUNDED_ACTIVATIONS:
        return None
    layers = hf_model.get_submodule(fam.layers)
    heads, kv = config.num_attention_heads, config.num_key_value_heads
    mats, pieces = [], []
    for layer in layers:
        a, m = layer.self_attn, layer.mlp
        if any(_bias(lin) is not None for lin in (a.o_proj, m.gate_proj, m.up_proj, m.down_proj)):
            return None
        hd = a.v_proj.weight.shape[0] // kv
        groups = [a.v_proj.weight[g * hd:(g + 1) * hd] for g in range(kv)]
        pieces.append((len(mats), groups, a.v_proj, a.o_proj, m))
        mats += [*groups, a.o_proj.weight, m.gate_proj.weight, m.up_proj.weight, m.down_proj.weight]
    norms = spectral_norms([w.detach() for w in mats])
    out = []
    for (i, groups, v, o, m), layer in zip(pieces, layers):
        g_norms = norms[i:i + len(groups)]
        w_o, w_gate, w_up, w_down = norms[i + len(groups):i + len(groups) + 4]
        bias = _bias(v)
        hd = groups[0].shape[0]
        per_head = [g_norms[h * kv // heads] for h in range(heads)]  # head h reads key-value group h // (heads / kv)
        c_head = [0.0 if bias is None else bias[(h * kv // heads) * hd:(h * kv // heads + 1) * hd].norm().item()
                  for h in range(heads)]
        u_attn = _ln_slopes(layer.get_submodule(fam.input_norms[0]), d, fam.gain_offset)["mean_norm"]
        out.append(branch_gain((per_head, c_head, w_o, 0.0), u_attn))
        u_mlp = _ln_slopes(layer.get_submodule(fam.input_norms[1]), d, fam.gain_offset)["mean_norm"]
        gated = min(w_gate * _max_row_norm(m.up_proj.weight), _max_row_norm(m.gate_proj.weight) * w_up)
        out.append(w_down * gated * u_mlp ** 2)
    return out


def family_bound_rows(hf_model, fam: Family, hidden: list[torch.Tensor]) -> list[dict]:
    """Bound rows (bounds.bound_rows' columns) of the stream ``hidden`` (per point, (B, T, d)) where
    the family's bound is proven; [] otherwise."""
    d, T = hidden[0].shape[-1], hidden[0].shape[-2]
    layers = hf_model.get_submodule(fam.layers)
    on_sum = fam.placement == "post"
    slopes = gated_pre_slopes(hf_model, fam, d) if fam.placement == "pre" and fam.input_norms else None
    if slopes is not None:
        steps = [(False, increment_slopes(c, d)) for c in slopes]
    elif fam.placement in ("peri", "output", "post") and fam.step_norms:
        steps = [(on_sum, _ln_slopes(layer.get_submodule(n), d, fam.gain_offset)) for layer in layers
                 for n in fam.step_norms]
    else:
        return []
    measured = stacked_moments(hidden)
    bound = cumulative_bounds(measured[0], steps, 1.0)
    rtol = roundoff_allowance(len(steps), d, T, torch.float32)
    rows = []
    for k, m in enumerate(measured):
        kind = "start" if k == 0 else ("ln_identity" if on_sum else "check")
        rows += [_row(*point_of(k), k, q, m[q], float("nan"), bound[q][k], kind, rtol) for q in FORWARD_QUANTITIES]
        if k and slopes is not None:  # the branch's own slope (F6): its largest per-token norm
            branch = (hidden[k].double() - hidden[k - 1].double()).norm(dim=-1).max().item()
            rows.append(_row(*point_of(k), k, "branch_norm_max", branch, math.nan, slopes[k - 1], "check", rtol))
    return rows
