"""Wasserstein sensitivity of the flow map x^(0) -> x^(K) of a trained model (the paper's
uncertainty-quantification section; docs/theory.md, section 5).

A batch of sequences gives a cloud of token states in R^d: its embeddings X^(0) (input) and
their images X^(K) under the residual stream (output). For a second input distribution nu,
either the embeddings perturbed by Gaussian noise of a stated relative scale or the embeddings
of another slice of the corpus, the sensitivity is

    W_2(T#mu, T#nu) / W_2(mu, nu),

the 2-Wasserstein distance between the output clouds over that between the input clouds
(uniform weights on the token states), computed with POT: exactly (network simplex, ``ot.emd2``)
up to MAX_EXACT_POINTS points per cloud, by the sliced distance beyond (``ot.sliced_
wasserstein_distance``, with the standard error of its Monte-Carlo mean over projections).

Next to each ratio, the measured gains of the flow's Jacobian J = dx^(K)/dx^(0) over a sequence
(exact: dense, float64, by reverse-mode autograd through the flow), on the first FLOW_GAIN_SEQUENCES
sequences: ``rms_gain`` = ||J||_F / sqrt(T d), the gain of a random direction (E ||J v||^2 =
||J||_F^2 / (T d) for v uniform on the unit sphere), which small Gaussian noise sees; and
``worst_gain`` = ||J||_2, the gain of the worst direction. For noise small enough that the flow is
linear around the data, the noise ratio should be close to the RMS gain; the worst-direction
gain bounds how far the flow can move one sequence's perturbation, not a ratio of distributions
(W_2 of the inputs is at most the cost of the identity coupling, not equal to it).
"""
from __future__ import annotations

import math

import numpy as np
import torch

NOISE_SCALES = (0.01, 0.1, 1.0)  # noise std relative to the rms entry of the embeddings
MAX_EXACT_POINTS = 4096  # exact OT is O(n^3); beyond this, sliced Wasserstein
PROJECTIONS = 256  # directions of the sliced distance
SEED = 0
# the columns of one row of ``sensitivity_rows`` and ``flow_gains``
WASSERSTEIN_COLUMNS = ("perturbation", "noise_scale", "points", "method", "w_in", "w_out", "w_in_se", "w_out_se",
                       "ratio", "rms_gain", "worst_gain")
FLOW_GAIN_SEQUENCES = 2  # sequences whose flow Jacobian is formed (dense, (T d)^2 float64 entries)
FLOW_GAIN_MAX_DIM = 2048  # above this T d the gains are not computed (NaN), never estimated


def cloud(x: torch.Tensor) -> np.ndarray:
    """(B, T, d) token states -> (B*T, d) float64 points."""
    return x.detach().reshape(-1, x.shape[-1]).double().cpu().numpy()


def w2(a: np.ndarray, b: np.ndarray) -> tuple[float, float, str]:
    """(W_2 between the uniform clouds a and b, its standard error (0 when exact), method)."""
    import ot

    if max(len(a), len(b)) <= MAX_EXACT_POINTS:
        cost = ot.dist(a, b)  # squared Euclidean
        value = ot.emd2(np.full(len(a), 1 / len(a)), np.full(len(b), 1 / len(b)), cost, numItermax=10_000_000)
        return math.sqrt(max(value, 0.0)), 0.0, "exact"
    return sliced_w2(a, b)


def sliced_w2(a: np.ndarray, b: np.ndarray, projections: int = PROJECTIONS, seed: int = SEED):
    """Sliced 2-Wasserstein distance and the standard error of its Monte-Carlo estimate."""
    import ot

    value, log = ot.sliced_wasserstein_distance(a, b, n_projections=projections, seed=seed, log=True)
    per = np.asarray(log["projected_emds"], dtype=np.float64)  # W_2^2 along each direction
    se_sq = per.std(ddof=1) / math.sqrt(len(per))
    return float(value), float(se_sq / (2 * value)) if value > 0 else 0.0, "sliced"


def stream(model, x0: torch.Tensor) -> torch.Tensor:
    """x^(K) from embeddings x^(0): the residual stream, without the head."""
    x = x0
    for r in model.sublayers():
        x = r(x)
    return x


# without autograd's record (a no_grad inside a torch.func transform would also hide the Jacobian)
flow = torch.no_grad()(stream)


@torch.no_grad()
def sensitivity_rows(model, idx: torch.Tensor, other_idx: torch.Tensor, seed: int = SEED) -> list[dict]:
    """One row per second distribution: noise at each of NOISE_SCALES, and another corpus slice."""
    model.eval()
    x0 = model.embed(idx)
    out = flow(model, x0)
    rms = x0.pow(2).mean().sqrt().item()
    gen = torch.Generator().manual_seed(seed)
    seconds = [(f"noise {s:g}", s, x0 + s * rms * torch.randn(x0.shape, generator=gen, dtype=x0.dtype))
               for s in NOISE_SCALES]
    seconds.append(("other slice", math.nan, model.embed(other_idx)))
    rows = []
    for name, scale, y0 in seconds:
        w_in, se_in, method = w2(cloud(x0), cloud(y0))
        w_out, se_out, _ = w2(cloud(out), cloud(flow(model, y0)))
        rows.append({"perturbation": name, "noise_scale": scale, "points": x0.shape[0] * x0.shape[1],
                     "method": method, "w_in": w_in, "w_out": w_out, "w_in_se": se_in, "w_out_se": se_out,
                     "ratio": w_out / w_in if w_in > 0 else math.nan})
    return rows


def flow_gains(model, idx: torch.Tensor, sequences: int = FLOW_GAIN_SEQUENCES,
               max_dim: int = FLOW_GAIN_MAX_DIM) -> dict[str, float]:
    """{'rms_gain', 'worst_gain'} of the flow Jacobian (module doc), the largest over the first
    ``sequences`` sequences of idx; NaN above ``max_dim`` = T d. The Jacobians of every sequence
    in one pass: reverse mode through the float64 flow, vectorised over the T d output
    directions and over the sequences (one product per sub-layer, not a dense matrix per step)."""
    import copy

    from torch.nn.attention import SDPBackend, sdpa_kernel

    from .bounds import spectral_norm_exact

    T, d = idx.shape[1], model.cfg.d_model
    if T * d > max_dim:
        return {"rms_gain": math.nan, "worst_gain": math.nan}
    m64 = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        x0 = m64.embed(idx[:sequences])
    # sdpa's fused CPU kernel has no batching rule for vmap; the math backend is the same function
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        J = torch.func.vmap(torch.func.jacrev(lambda z: stream(m64, z.unsqueeze(0)).squeeze(0), chunk_size=256))(x0)
    J = J.reshape(len(x0), T * d, T * d)
    rms = max(J[b].norm().item() / math.sqrt(T * d) for b in range(len(J)))
    worst = max(spectral_norm_exact(J[b]) for b in range(len(J)))
    return {"rms_gain": rms, "worst_gain": worst}
