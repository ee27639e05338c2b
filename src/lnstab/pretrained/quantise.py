"""Quantisation is a change of weights: a float32 model's matrices quantised to the formats the
GGUF models ship in (llama.cpp's block formats, through gguf-py) and dequantised again, so that the
effect of quantisation on every reported statistic can be measured on a model that has both.

Every 2-D weight (embeddings and the attention and MLP matrices) is quantised; norms and biases
stay float32, as GGUF files keep them. A format whose block does not divide a matrix's rows falls
back as llama.cpp's does for them: Q4_K to Q5_0 (``FALLBACK``). Q4_K has no quantiser in gguf-py:
``q4_k_blocks`` packs the format (8 sub-blocks of 32 with 6-bit scales and minima under two
float16 factors) with the plain min/max choice per sub-block, not llama.cpp's searched one, so its
error is if anything larger than the shipped files'.
"""
from __future__ import annotations

import copy
from collections import Counter

import numpy as np
import torch

FORMATS = ("Q8_0", "Q5_0", "Q4_1", "Q4_K")
FALLBACK = {"Q4_K": "Q5_0"}
QK_K = 256


def q4_k_blocks(x: np.ndarray) -> np.ndarray:
    """Q4_K blocks (uint8, 144 bytes per 256 values) of a float32 array whose size divides by 256."""
    sub = x.astype(np.float32).reshape(-1, 8, 32)  # super-blocks of 8 sub-blocks
    lo = np.minimum(sub.min(-1), 0.0)  # the format's minimum is <= 0 (stored as -min >= 0)
    scale = (sub.max(-1) - lo) / 15.0
    d = (scale.max(-1) / 63.0).astype(np.float16)
    dmin = (-lo.min(-1) / 63.0).astype(np.float16)
    d32, dmin32 = d.astype(np.float32)[:, None], dmin.astype(np.float32)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(d32 > 0, np.rint(scale / d32), 0).clip(0, 63).astype(np.uint8)
        mn = np.where(dmin32 > 0, np.rint(-lo / dmin32), 0).clip(0, 63).astype(np.uint8)
        step = (d32 * sc)[..., None]
        q = np.where(step > 0, np.rint((sub + (dmin32 * mn)[..., None]) / step), 0).clip(0, 15).astype(np.uint8)
    scales = np.empty((len(sub), 12), np.uint8)
    scales[:, 0:4] = (sc[:, :4] & 63) | ((sc[:, 4:] >> 4) << 6)
    scales[:, 4:8] = (mn[:, :4] & 63) | ((mn[:, 4:] >> 4) << 6)
    scales[:, 8:12] = (sc[:, 4:] & 15) | ((mn[:, 4:] & 15) << 4)
    q = q.reshape(-1, 4, 2, 32)  # byte i of group g: sub-block 2g in the low nibble, 2g + 1 in the high
    qs = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(-1, 128)
    return np.concatenate([d.view(np.uint8).reshape(-1, 2), dmin.view(np.uint8).reshape(-1, 2), scales, qs], 1)


def round_trip(w: torch.Tensor, fmt: str) -> tuple[torch.Tensor, str]:
    """(w quantised to ``fmt`` and dequantised, the format used): the fallback where the format's
    block does not divide w's rows."""
    from gguf import GGMLQuantizationType, dequantize, quantize
    from gguf.constants import GGML_QUANT_SIZES

    block = GGML_QUANT_SIZES[GGMLQuantizationType[fmt]][0]
    if w.shape[-1] % block:
        fmt = FALLBACK.get(fmt, fmt)
        block = GGML_QUANT_SIZES[GGMLQuantizationType[fmt]][0]
        if w.shape[-1] % block:
            return w, "F32"
    a = w.detach().float().numpy()
    qtype = GGMLQuantizationType[fmt]
    data = q4_k_blocks(a).reshape(*a.shape[:-1], -1) if fmt == "Q4_K" else quantize(a, qtype)
    return torch.from_numpy(np.ascontiguousarray(dequantize(data, qtype)).reshape(a.shape)).to(w.dtype), fmt


def quantised_copy(model, fmt: str) -> tuple[torch.nn.Module, dict[str, int]]:
    """A copy of the model with every 2-D weight round-tripped through ``fmt``; how many tensors
    each format took (F32: the norms, biases and what no block divides)."""
    q = copy.deepcopy(model)
    used = Counter()
    with torch.no_grad():
        for _, p in q.named_parameters():
            if p.ndim == 2:
                new, got = round_trip(p, fmt)
                p.copy_(new)
                used[got] += 1
            else:
                used["F32"] += 1
    return q, dict(sorted(used.items()))
