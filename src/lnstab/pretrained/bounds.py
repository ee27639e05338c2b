"""The bounds of docs/bounds.md on a real model's stream, from its own weights ("Real models").

Peri-LN (Gemma 2/3's sandwich) and OLMo 2's output norm: every sub-layer adds a norm's output, so
F2 bounds x^(k) by x^(0)'s measured moments plus the output norms' slopes, with the family's gain
(Gemma's RMSNorm: 1 + w). Post-LN (BERT): every x^(k) is a LayerNorm's output (F3), bounded by
that norm alone: rows ``ln_identity``, reported, not counted as checks. The measured side is the
model's own float32 stream (its rounding allowance is float32's).
"""
from __future__ import annotations

import torch

from ..bounds import FORWARD_QUANTITIES, _ln_slopes, _row, cumulative_bounds, roundoff_allowance
from ..probes import point_of, stacked_moments
from .hooked import Family


def family_bound_rows(hf_model, fam: Family, hidden: list[torch.Tensor]) -> list[dict]:
    """Bound rows (bounds.bound_rows' columns) of the stream ``hidden`` (per point, (B, T, d)) where
    the family's bound is proven; [] otherwise."""
    if fam.placement not in ("peri", "output", "post") or not fam.step_norms:
        return []
    d, T = hidden[0].shape[-1], hidden[0].shape[-2]
    layers = hf_model.get_submodule(fam.layers)
    on_sum = fam.placement == "post"
    steps = [(on_sum, _ln_slopes(layer.get_submodule(n), d, fam.gain_offset)) for layer in layers
             for n in fam.step_norms]
    measured = stacked_moments(hidden)
    bound = cumulative_bounds(measured[0], steps, 1.0)
    rtol = roundoff_allowance(len(steps), d, T, torch.float32)
    rows = []
    for k, m in enumerate(measured):
        kind = "start" if k == 0 else ("ln_identity" if on_sum else "check")
        rows += [_row(*point_of(k), k, q, m[q], float("nan"), bound[q][k], kind, rtol) for q in FORWARD_QUANTITIES]
    return rows
