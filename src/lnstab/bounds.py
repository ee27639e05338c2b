"""The bounds of docs/bounds.md (statements and proofs), computed from a model's weights.

``forward_bounds`` gives, for every probe point x^(k), k = 0..K, an upper bound on each moment
(mean_abs, var_entry, var_data, mean_norm) that holds for ANY input batch whose embeddings have
the measured moments at k = 0. The per-sub-layer slope depends on the sub-layer's placement
(LayerNorm or RMSNorm alike: docs/bounds.md, F1 and F1'):

    peri, output   : output-norm parameters only       (linear in k*dt; variances quadratic)
    post, deepnorm : the norm that produced x^(k)      (constant, not cumulative)
    pre            : spectral norms of V/O/MLP weights, input-norm bound on the branch input
    none           : same weights, running bound on max_t ||x_t|| as input (exponential in depth)
    mix            : post in its first blocks, then pre, starting from the last post bound

``backward_bounds`` turns estimated sub-layer Jacobian norms into the two-sided product bound on
the adjoint ratio ||p^(k)|| / ||p^(K)||. ``bound_rows`` compares bounds with measured probes.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from .model import GPT, NORM_ON_BRANCH, NORM_ON_SUM, Residual
from .probes import ln_stats, moments, operator_norms, point_of, spectral_norms

FORWARD_QUANTITIES = ("mean_abs", "var_entry", "var_data", "mean_norm")
UNIT_ROUNDOFF = {torch.float64: 2.0 ** -53, torch.float32: 2.0 ** -24}


def roundoff_allowance(n_sublayers: int, width: int, context: int, dtype=torch.float64) -> float:
    """Relative allowance for rounding on the measured side of a bound row (docs/bounds.md,
    "Rounding"): every bound holds for any input of a sub-layer, so rounding errors do not
    propagate through Jacobians; each of the K sub-layers adds at most (2 + 4 n^(3/2)) u of its
    bound (the add, and at most three chained products of inner length n = max(4 width, context)
    plus the norm, to first order in u), compounded over K + 2 steps. u is the unit roundoff of
    the measured side: float64 where the probe re-evaluates it (the default)."""
    n = max(4 * width, context)
    return (n_sublayers + 2) * (2 + 4 * n ** 1.5) * UNIT_ROUNDOFF[dtype]


def _ln_slopes(ln, d: int, gain_offset: float = 0.0) -> dict[str, float]:
    """Bounds on the moments of one LN output y = g*z + b, for any input (docs/bounds.md, F1),
    in the units that add up under Minkowski: mean|y|, ||y||, std over entries, data-wise std.
    ``gain_offset``: the norm's gain is offset + weight (Gemma's RMSNorm: 1 + w)."""
    s = ln_stats(ln, gain_offset)
    return {
        "mean_abs": s["g_rms"] + s["b_mean_abs"],
        "mean_norm": s["g_inf"] * math.sqrt(d) + s["b_norm"],
        "var_entry": s["g_inf"] + s["b_std"],
        "var_data": s["g_inf"],
    }


def _bias_norm(lin: torch.nn.Linear, rows: slice | None = None) -> float:
    if lin.bias is None:
        return 0.0
    b = lin.bias.detach().double()
    return (b[rows] if rows is not None else b).norm().item()


def branch_norms(subs: list[Residual], known: dict[int, float] | None = None
                 ) -> list[tuple[list[float], list[float], float, float]]:
    """For every sub-layer branch F: (norms of its input maps, norms of their biases, ||W_out||,
    ||c_out||). The input maps are the MLP's W1, or the value map W_V^h of each attention head
    (queries and keys only set convex weights). Spectral norms in one batched call, except those
    in ``known`` (id of a parameter -> its spectral norm, as the probe measured it)."""
    pieces = []
    for r in subs:
        f = r.f
        if hasattr(f, "fc"):
            pieces.append(([f.fc.weight], [_bias_norm(f.fc)], f.proj))
            continue
        C = f.qkv.weight.shape[1]
        hd = C // f.n_head
        heads = [slice(2 * C + h * hd, 2 * C + (h + 1) * hd) for h in range(f.n_head)]
        pieces.append(([f.qkv.weight[rows] for rows in heads], [_bias_norm(f.qkv, rows) for rows in heads], f.proj))
    known = known or {}
    mats = [w for ins, _, out in pieces for w in ins + [out.weight]]
    todo = [w for w in mats if id(w) not in known]
    computed = iter(spectral_norms(todo))
    norms = iter([known[id(w)] if id(w) in known else next(computed) for w in mats])
    out = []
    for ins, biases, proj in pieces:
        in_norms = [next(norms) for _ in ins]
        out.append((in_norms, biases, next(norms), _bias_norm(proj)))
    return out


def branch_gain(norms: tuple[list[float], list[float], float, float], u_max: float) -> float:
    """Upper bound on ||F(u_t)|| for every token t, given max_j ||u_j|| <= u_max over the sequence
    and the branch's ``branch_norms``:  ||W_out|| sqrt(sum_h (||W_h|| u_max + ||c_h||)^2) + ||c_out||.

    MLP (one input map): ||W2|| (||W1|| u + ||c1||) + ||c2||   (|gelu(a)| <= |a|).
    Attention: each head is a convex combination of W_V^h u_j + c_V^h (causal softmax), so
    ||head_h|| <= ||W_V^h|| u + ||c_V^h||; the heads concatenate, then W_O."""
    in_norms, in_biases, out_norm, out_bias = norms
    return out_norm * math.sqrt(sum((w * u_max + c) ** 2 for w, c in zip(in_norms, in_biases))) + out_bias


@torch.no_grad()
def forward_bounds(model: GPT, x0: torch.Tensor, weight_norms: dict[str, float] | None = None
                   ) -> dict[str, np.ndarray]:
    """Upper bounds on the moments of x^(k), k = 0..K, for embeddings x0 of shape (B, T, d).
    ``weight_norms`` (parameter name -> spectral norm, from a probe of the same weights) saves
    recomputing them. Returned as the moments themselves (variances squared back), arrays of
    length K+1, and ``slope``: for each sub-layer j = 1..K the bound on max_t ||branch_t|| (the
    term dt multiplies; index 0 and Post-LN, which has no weight-free one, are NaN)."""
    m0 = moments(x0)
    d = x0.shape[-1]
    subs = model.sublayers()
    dt = subs[0].dt if subs else model.cfg.dt  # the step the model applies (Residual.dt)
    max_norm = x0.double().norm(dim=-1).max().item()  # running bound on max_t ||x_t||
    known = {id(p): weight_norms[n] for n, p in model.named_parameters() if n in (weight_norms or {})}
    weighted = [k for k, r in enumerate(subs) if r.placement in ("pre", "none")]  # slopes read F's weights
    gains = dict(zip(weighted, branch_norms([subs[k] for k in weighted], known)))
    steps = []
    for k, r in enumerate(subs, start=1):
        if r.placement in NORM_ON_SUM:  # x^(k) is a norm output (F3), whatever came before
            steps.append((True, _ln_slopes(r.ln_out, d)))
            max_norm = steps[-1][1]["mean_norm"]  # F1(a) holds token by token
            continue
        if r.placement in NORM_ON_BRANCH:
            inc = _ln_slopes(r.ln_out, d)
        else:
            u_max = _ln_slopes(r.ln_in, d)["mean_norm"] if r.placement == "pre" else max_norm
            inc = increment_slopes(branch_gain(gains[k - 1], u_max), d)  # per-token ||increment|| / dt
        max_norm += dt * inc["mean_norm"]
        steps.append((False, inc))
    return cumulative_bounds(m0, steps, dt)


def increment_slopes(c: float, d: int) -> dict[str, float]:
    """The slopes of a branch whose every token has ||F|| <= c: (1/d)||y||_1, the std over
    entries and the data-wise std are all <= ||y|| / sqrt(d)."""
    return {"mean_norm": c, "mean_abs": c / math.sqrt(d), "var_entry": c / math.sqrt(d), "var_data": c / math.sqrt(d)}


def cumulative_bounds(m0: dict[str, float], steps: list[tuple[bool, dict[str, float]]], dt: float
                      ) -> dict[str, np.ndarray]:
    """Bounds on the moments of x^(k), k = 0..K, from the measured moments ``m0`` of x^(0) and one
    step per sub-layer, (on_sum, slopes): on a norm's output (F3) x^(k) is bounded by its slopes
    alone; otherwise x^(k) = x^(k-1) + dt * branch, and Minkowski adds dt times the branch's
    slopes (seminorm units: mean|x|, ||x||, std over entries, data-wise std). Returned as the
    moments themselves (variances squared back), and ``slope``: the per-token bound on the branch
    (NaN at k = 0 and on a norm on the sum, which has no weight-free one)."""
    K = len(steps)
    out = {q: np.empty(K + 1) for q in FORWARD_QUANTITIES}
    out["slope"] = np.full(K + 1, np.nan)
    for q in FORWARD_QUANTITIES:
        out[q][0] = math.sqrt(m0[q]) if q.startswith("var") else m0[q]
    for k, (on_sum, slopes) in enumerate(steps, start=1):
        for q in FORWARD_QUANTITIES:
            out[q][k] = slopes[q] if on_sum else out[q][k - 1] + dt * slopes[q]
        if not on_sum:
            out["slope"][k] = slopes["mean_norm"]
    for q in ("var_entry", "var_data"):
        out[q] = out[q] ** 2
    return out


def backward_bounds(placements: list[str], dt: float, jac_branch: list[float], jac_step: list[float]):
    """Two-sided product bounds on ||p^(k)|| / ||p^(K)||, k = 0..K (docs/bounds.md, B2), from
    each sub-layer's placement and estimated Jacobian norms.

    Residual steps: p^(k) = (I + dt J_k)^T p^(k+1), so the ratio lies in
    [prod_{j>=k} max(0, 1 - dt ||J_j||), prod_{j>=k} (1 + dt ||J_j||)].
    A norm on the sum (post, deepnorm): the step is N(alpha x + dt F(x)); its full Jacobian norm
    bounds the ratio above and the norm's null space leaves 0 as the only lower bound."""
    K = len(jac_branch)
    lower, upper = np.ones(K + 1), np.ones(K + 1)
    steps = iter(jac_step)
    his, los = [0.0] * K, [0.0] * K
    for k in range(K):
        if placements[k] in NORM_ON_SUM:
            his[k], los[k] = next(steps), 0.0
        else:
            his[k], los[k] = 1 + dt * jac_branch[k], max(0.0, 1 - dt * jac_branch[k])
    for k in range(K - 1, -1, -1):
        upper[k] = upper[k + 1] * his[k]
        lower[k] = lower[k + 1] * los[k]
    return lower, upper


# What a bound row is (column ``kind``); only "check" rows count as checks and violations.
#   check       a theorem evaluated on the weights, k >= 1: the measured value can exceed it
#   start       k = 0: the bound starts from the measured embeddings, equal by construction
#   ln_identity the bounded quantity is a norm's output (x^(k) under post and deepnorm, the branch
#               under peri and output), so the bound restates the normalisation
#   diagnostic  the backward product bound: its Jacobian norms are estimates from below, so
#               it is reported as log10 slack over the measured adjoint ratio, never checked
#   not_computed the exact adjoint rows when they are switched off above the dense size
#               (probe.adjoint_lanczos_products 0): no number, never a lower estimate
BOUND_KINDS = ("check", "start", "ln_identity", "diagnostic", "not_computed")


def bound_rows(model: GPT, measured: dict, adjoint_sequences: int = 0, adjoint_max_dim: int = 2048,
               adjoint_products: int = 128) -> list[dict]:
    """Rows (point, layer, sublayer, quantity, measured, lower, bound, ratio, kind, violation).

    ``measured`` is the dict ``probes.probe`` returns; where it holds the float64 re-evaluation
    (``float64``), that is the measured side (and the rounding allowance is float64's). Forward
    moments against their cumulative bounds; ``branch_norm_max`` (max_t ||branch_t|| of sub-layer
    k) against its per-sub-layer slope; the adjoint ratio ||p^(k)|| / ||p^(K)|| against the
    backward product bound (a diagnostic); with ``adjoint_sequences`` > 0 the exact per-step and
    whole-flow adjoint inequalities (``adjoint_rows``)."""
    exact = measured.get("float64")
    m = exact or measured
    hidden = m["hidden"]
    K = len(hidden) - 1
    placements = [r.placement for r in model.sublayers()]
    fb = forward_bounds(model, hidden[0], measured.get("weight_norms"))
    rtol = roundoff_allowance(K, hidden[0].shape[-1], hidden[0].shape[-2], hidden[0].dtype)
    rows = []
    for k, mk in enumerate(m["moments"]):
        point, layer = point_of(k)
        p = placements[k - 1] if k >= 1 else None
        kind = "start" if k == 0 else ("ln_identity" if p in NORM_ON_SUM else "check")
        for q in FORWARD_QUANTITIES:
            rows.append(_row(point, layer, k, q, mk[q], float("nan"), fb[q][k], kind, rtol))
        if k >= 1 and p not in NORM_ON_SUM:  # a normed branch's slope is the norm's own bound
            rows.append(_row(point, layer, k, "branch_norm_max", m["branch_norm_max"][k - 1],
                             float("nan"), fb["slope"][k], "ln_identity" if p in NORM_ON_BRANCH else "check", rtol))
    if measured["jac_branch"]:
        dt = model.sublayers()[0].dt
        lower, upper = backward_bounds(placements, dt, measured["jac_branch"], measured["jac_step"])
        adj = measured["adjoint"]
        for k in range(K + 1):
            point, layer = point_of(k)
            ratio = adj[k] / adj[K] if adj[K] > 0 else float("nan")
            rows.append(_row(point, layer, k, "adjoint_ratio", ratio, lower[k], upper[k], "diagnostic", rtol))
    if adjoint_sequences > 0 and exact is not None:
        rows += adjoint_rows(exact["model"], exact["hidden"], exact["adjoints"], adjoint_sequences, adjoint_max_dim,
                             rtol, adjoint_products)
    return rows


def step_jacobian(step, x: torch.Tensor, tokenwise: bool = False) -> torch.Tensor:
    """The Jacobian of one sub-layer's step at one sequence x (T, d): dense (T d x T d), or, for a
    step that acts token by token (an MLP sub-layer: its norms and F are per token), the T
    diagonal blocks (T, d, d) of that block-diagonal matrix."""
    T, d = x.shape
    # sdpa's fused CPU kernel has no batching rule for vmap's VJPs; the math backend is the same
    # function. Under no_grad the transforms still differentiate x, but record nothing for the weights.
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        if tokenwise:
            return torch.func.vmap(torch.func.jacrev(lambda z: step(z.view(1, 1, d)).view(d)))(x.detach())
        J = torch.func.jacrev(lambda z: step(z.unsqueeze(0)).squeeze(0), chunk_size=256)(x.detach())
    return J.reshape(T * d, T * d)


def spectral_norm_exact(S: torch.Tensor) -> float:
    """||S||_2 of a dense float64 matrix, or the largest over a stack of diagonal blocks: the square
    root of the top eigenvalue of S^T S from torch's symmetric eigensolver (backward stable:
    relative error ~ n u, within the allowance). torch's LAPACK runs on torch's threads, which the
    config sets (train.threads): numpy's BLAS would follow the environment and change the last bits."""
    S = S.detach().cpu()
    G = S.transpose(-1, -2) @ S
    return torch.linalg.eigvalsh(G)[..., -1].max().clamp_min(0).sqrt().item()


def _apply(S: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """S @ M for a dense S, or for S given by its diagonal blocks (T, d, d)."""
    if S.ndim == 2:
        return S @ M
    T, d, _ = S.shape
    return torch.bmm(S, M.view(T, d, -1)).view(T * d, -1)


def jacobian_chain(model: GPT, hidden: list[torch.Tensor]) -> tuple[torch.Tensor, list[float]]:
    """For one sequence's stream x^(0..K) (each (T, d), float64): the flow Jacobian
    S_K ... S_1 (dense, T d x T d) and ||S_k||_2 of every step, exact."""
    T, d = hidden[0].shape
    flow = torch.eye(T * d, dtype=torch.float64)
    norms = []
    for k, r in enumerate(model.sublayers(), start=1):
        S = step_jacobian(r, hidden[k - 1], tokenwise=getattr(r.f, "tokenwise", False)).detach()
        flow = _apply(S, flow)
        norms.append(spectral_norm_exact(S))
    return flow, norms


# Probability, over the Lanczos start vector, that a certified norm falls below the true norm.
CERTIFICATE_FAILURE = 1e-9


def lanczos_margin(n: int, products: int, failure: float = CERTIFICATE_FAILURE) -> float:
    """The relative margin eps of a Lanczos certificate (docs/bounds.md, B3): for a symmetric
    positive semi-definite n x n matrix A and a start vector uniform on the sphere, the top Ritz
    value theta after ``products`` products satisfies theta >= (1 - eps) lambda_max(A) except with
    probability at most 1.648 sqrt(n) exp(-(2k - 1) sqrt(eps)) (Kuczynski and Wozniakowski 1992,
    k the Krylov steps; k = products - 1 here, the conservative count), set equal to ``failure``."""
    k = products - 1
    if k < 1:
        return 1.0
    return min(1.0, (math.log(1.648 * math.sqrt(n) / failure) / (2 * k - 1)) ** 2)


def certified_norm(fn, x: torch.Tensor, products: int) -> float:
    """An upper bound on ||J||_2, J the Jacobian of fn at one sequence x (T, d), from Lanczos on
    J^T J (probes.operator_norms, no early stop): sqrt(theta / (1 - eps)). theta never exceeds
    ||J||^2, so the bound is at most 1 / sqrt(1 - eps) above the true norm; it is below it only with
    probability CERTIFICATE_FAILURE over the seeded start vector, and then it raises a false alarm,
    never hides an excess."""
    products = min(products, x.numel())
    eps = lanczos_margin(x.numel(), products)
    if eps >= 1.0:
        return float("inf")
    theta = operator_norms([fn], [x.unsqueeze(0)], products, tol=0.0)[0]
    return theta / math.sqrt(1.0 - eps)


def certified_chain(model: GPT, hidden: list[torch.Tensor], products: int) -> tuple[float, list[float]]:
    """What ``jacobian_chain`` gives, where a dense T d x T d matrix is too large: each token-wise
    step's norm exact (its T diagonal d x d blocks), every other step's and the flow's certified."""
    subs = model.sublayers()
    norms = []
    for k, r in enumerate(subs, start=1):
        if getattr(r.f, "tokenwise", False):
            norms.append(spectral_norm_exact(step_jacobian(r, hidden[k - 1], tokenwise=True)))
        else:
            norms.append(certified_norm(r, hidden[k - 1], products))

    def flow(z):
        for r in subs:
            z = r(z)
        return z
    return certified_norm(flow, hidden[0], products), norms


def adjoint_rows(model: GPT, hidden: list[torch.Tensor], adjoints: list[torch.Tensor], sequences: int,
                 max_dim: int, rtol: float, products: int = 128) -> list[dict]:
    """The exact backward inequalities, in float64, per sequence b of the first ``sequences``:
    sub-layer k maps x^(k-1) to x^(k) with Jacobian S_k (over the whole sequence, dense), and the
    adjoint obeys p^(k-1) = S_k^T p^(k), so ||p^(k-1)|| <= ||S_k||_2 ||p^(k)|| (quantity
    ``adjoint_step``, row k) and ||p^(0)|| <= ||S_K ... S_1||_2 ||p^(K)|| (``adjoint_flow``, row 0).
    Each row keeps the sequence with the largest measured / bound. Up to ``max_dim`` = T d the
    norms are exact (dense Jacobians); above it, upper bounds certified by ``products`` Lanczos
    products (``certified_chain``), or, with ``products`` 0, rows of kind ``not_computed``: never a
    lower estimate counted as a check."""
    T, d = hidden[0].shape[-2:]
    K = len(model.sublayers())
    if T * d > max_dim and products <= 0:
        return [_row(*point_of(k), k, q, float("nan"), float("nan"), float("nan"), "not_computed", rtol)
                for k, q in [(k, "adjoint_step") for k in range(1, K + 1)] + [(0, "adjoint_flow")]]
    worst: dict[int, tuple[float, float]] = {}
    for b in range(min(sequences, hidden[0].shape[0])):
        p = [a[b].double().norm().item() for a in adjoints]
        stream = [h[b] for h in hidden]
        if T * d <= max_dim:
            flow, norms = jacobian_chain(model, stream)
            flow_norm = spectral_norm_exact(flow)
        else:
            flow_norm, norms = certified_chain(model, stream, products)
        cands = {k: (p[k - 1] / p[k] if p[k] > 0 else float("nan"), norms[k - 1]) for k in range(1, K + 1)}
        cands[0] = (p[0] / p[K] if p[K] > 0 else float("nan"), flow_norm)
        for k, c in cands.items():
            if k not in worst or c[0] / c[1] > worst[k][0] / worst[k][1]:
                worst[k] = c
    return [_row(*point_of(k), k, "adjoint_flow" if k == 0 else "adjoint_step", m, float("nan"), bound, "check", rtol)
            for k, (m, bound) in sorted(worst.items())]


def _row(point, layer, k, q, value, lower, bound, kind, rtol):
    value, lower, bound = float(value), float(lower), float(bound)  # plain floats: checkpoints load weights_only
    if math.isnan(bound):
        ratio = float("nan")
    else:
        ratio = value / bound if bound > 0 else (0.0 if value == 0 else float("inf"))
    over = value > bound * (1 + rtol) or (not math.isnan(lower) and value < lower * (1 - rtol))
    return {"point": point, "layer": layer, "sublayer": k, "quantity": q, "measured": value,
            "lower": lower, "bound": bound, "ratio": ratio, "kind": kind,
            "violation": bool(kind == "check" and over)}
