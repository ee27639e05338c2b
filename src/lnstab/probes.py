"""Probes: what the paper's figures plot, measured on a fixed probe batch without touching training.

A probe runs its own forward and backward pass in float32 on the probe batch, takes gradients with
``torch.autograd.grad`` (so ``.grad`` of the parameters, the optimizer and every RNG are left
alone) and returns long-format rows ``(point, layer, sublayer, quantity, value)``.

Probe points are the residual stream x^(k), k = 0..K (K = 2 * n_layer):
``point`` is ``embed`` (k = 0), ``attn`` or ``mlp`` (the output of that sub-layer of block
``layer``); ``sublayer`` is k. "After every block" is the ``mlp`` points. Rows about parameters
use ``point`` = the parameter's name inside its block (``attn.f.qkv.weight``) or ``block``
for the whole block, and ``sublayer`` = the k of the sub-layer they belong to; ``-1`` marks
"not applicable" (embeddings, final LN).
"""
from __future__ import annotations

import copy
import math

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from .model import GPT, NORM_ON_BRANCH, NORM_ON_SUM, LayerNorm, lm_loss

HIDDEN_QUANTITIES = ("mean_abs", "var_entry", "var_data", "mean_norm", "max_abs")


def moments(x: torch.Tensor) -> dict[str, float]:
    """The moments of docs/bounds.md ("Setting") on a (..., d) tensor, flattened to N tokens x d entries.
    Variances are biased (1/d over entries, 1/N over tokens). Computed in float64."""
    return stacked_moments([x])[0]


# float64 bytes a batched reduction stacks at once (moments, spectral norms): the study's tensors
# stay in one batch; a GPT-2 XL checkpoint's are taken a few at a time
STACK_BYTES = 2**28


def stacked_moments(xs: list[torch.Tensor], chunk: int = 16) -> list[dict[str, float]]:
    """``moments`` of equally shaped tensors, a chunk of them per reduction (one host sync each)."""
    out = []
    if xs:
        chunk = max(1, min(chunk, STACK_BYTES // (8 * xs[0].numel())))
    for i in range(0, len(xs), chunk):
        X = torch.stack([x.detach().reshape(-1, x.shape[-1]) for x in xs[i:i + chunk]]).double()  # (P, N, d)
        A = X.abs()
        values = torch.stack([
            A.mean((1, 2)),
            (X - X.mean(2, keepdim=True)).square().mean((1, 2)),  # mean over tokens of the entry variance
            (X - X.mean(1, keepdim=True)).square().mean((1, 2)),  # mean over entries of the data variance
            X.norm(dim=2).mean(1),
            A.amax((1, 2)),
        ], 1).tolist()
        out += [dict(zip(HIDDEN_QUANTITIES, v)) for v in values]
    return out


def norm64(t: torch.Tensor) -> torch.Tensor:
    """Euclidean norm accumulated in float64, without a float64 copy of t."""
    return torch.linalg.vector_norm(t.detach(), dtype=torch.float64)


def point_of(k: int) -> tuple[str, int]:
    """Probe point name and block index of x^(k)."""
    if k == 0:
        return "embed", -1
    return ("attn" if k % 2 == 1 else "mlp"), (k - 1) // 2


def param_location(name: str) -> tuple[str, int, int]:
    """'blocks.3.mlp.f.fc.weight' -> ('mlp.f.fc.weight', 3, 8): short name, block, sublayer k."""
    parts = name.split(".")
    if parts[0] != "blocks":
        return name, -1, -1
    layer = int(parts[1])
    k = 2 * layer + (1 if parts[2] == "attn" else 2)
    return ".".join(parts[2:]), layer, k


def ln_stats(ln, gain_offset: float = 0.0) -> dict[str, float]:
    """The LN parameters the forward bounds read (docs/bounds.md, F1); the gain is
    ``gain_offset`` + weight (Gemma's RMSNorm stores w of the gain 1 + w)."""
    g = ln.weight.detach().double() + gain_offset
    bias = getattr(ln, "bias", None)  # RMSNorm has none (transformers: no attribute at all)
    b = bias.detach().double() if bias is not None else torch.zeros_like(g)
    return {
        "g_inf": g.abs().max().item(),
        "g_rms": g.norm().item() / math.sqrt(g.numel()),
        "b_norm": b.norm().item(),
        "b_mean_abs": b.abs().mean().item(),
        "b_std": b.std(unbiased=False).item(),
    }


def spectral_norms(mats: list[torch.Tensor]) -> list[float]:
    """Largest singular value of each matrix, in float64.

    sigma_max(W)^2 is the top eigenvalue of the smaller Gram matrix (W W^T or W^T W); its
    symmetric eigensolver, batched over matrices of one shape, is far cheaper than an SVD of each
    and as accurate for the largest singular value (absolute error ~1e-16 sigma_max^2)."""
    out = [0.0] * len(mats)
    by_shape: dict[tuple, list[int]] = {}
    for i, w in enumerate(mats):
        by_shape.setdefault(tuple(w.shape), []).append(i)
    for (rows, cols), same in by_shape.items():
        chunk = max(1, STACK_BYTES // (8 * rows * cols))
        for idx in (same[i:i + chunk] for i in range(0, len(same), chunk)):
            W = torch.stack([mats[i].detach() for i in idx]).double()
            gram = W @ W.transpose(1, 2) if rows <= cols else W.transpose(1, 2) @ W
            top = torch.linalg.eigvalsh(gram)[:, -1].clamp_min(0).sqrt().tolist()
            for i, v in zip(idx, top):
                out[i] = v
    return out


class _Lanczos:
    """One Lanczos process on J^T J per sequence of one function's input (batched over dim 0)."""

    def __init__(self, q: torch.Tensor):
        self.ndim = q.ndim
        self.q = q / self._per_seq(self.dot(q, q).sqrt())
        self.q_prev = torch.zeros_like(q)
        self.beta = torch.zeros(q.shape[0], dtype=q.dtype, device=q.device)
        self.alphas: list[torch.Tensor] = []
        self.betas: list[torch.Tensor] = []
        self.theta = torch.zeros(q.shape[0], dtype=torch.float64)  # top Ritz value per sequence

    def _per_seq(self, t: torch.Tensor) -> torch.Tensor:
        return t.view(-1, *[1] * (self.ndim - 1))

    @staticmethod
    def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * b).flatten(1).sum(1)

    def step(self, w: torch.Tensor, tol: float) -> bool:
        """Take w = J^T J q; True once every sequence's residual bound is below tol relative to
        the largest Ritz value, the estimate of ||J||^2."""
        alpha = self.dot(w, self.q)
        w = w - self._per_seq(alpha) * self.q - self._per_seq(self.beta) * self.q_prev
        self.beta = self.dot(w, w).sqrt()
        self.alphas.append(alpha.double().cpu())
        T = torch.diag_embed(torch.stack(self.alphas, -1))
        if self.betas:
            off = torch.diag_embed(torch.stack(self.betas, -1), offset=1)
            T = T + off + off.transpose(-1, -2)
        evals, evecs = torch.linalg.eigh(T)
        self.theta = evals[:, -1]
        # beta_j |s_j|: some eigenvalue of J^T J lies within it of the Ritz value
        residual = self.beta.double().cpu() * evecs[:, -1, -1].abs()
        self.betas.append(self.beta.double().cpu())
        beta = self._per_seq(self.beta)
        self.q_prev, self.q = self.q, torch.where(beta > 0, w / beta.clamp_min(1e-30), 0.0)
        return bool((residual <= tol * self.theta.abs().max()).all())

    def norm(self) -> float:
        return self.theta.clamp_min(0).sqrt().max().item()


def operator_norms(fns: list, xs: list[torch.Tensor], iters: int, tol: float, seed: int = 0) -> list[float]:
    """Estimate ||J_i||, the norm of the Jacobian of fns[i] at xs[i], by Lanczos on J^T J.

    Every fn must act on each sequence (dim 0) separately, as every sub-layer does: J is then
    block diagonal, ||J|| is the largest block norm, and one Lanczos process runs per
    (function, sequence). The top Ritz value of a Lanczos process is a Rayleigh quotient, so each
    estimate approaches the norm from below; Lanczos gets there in far fewer products than power
    iteration (docs/bounds.md). All functions share one autograd graph: J v comes from
    differentiating the vector-Jacobian product J^T u with respect to u (double backward), and a
    function whose processes have all converged leaves the products: once every residual bound
    beta_j |s_j| is below ``tol`` relative to the function's largest Ritz value, after ``iters``
    products, or after as many products as a sequence has entries (exact in exact arithmetic).
    Its own generator: the training RNG is never touched."""
    if not xs:
        return []
    iters = min(iters, min(x[0].numel() for x in xs))
    gen = torch.Generator().manual_seed(seed)
    procs = [_Lanczos(torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)) for x in xs]
    # sdpa's fused CPU kernel has no double backward; the math backend is the same function
    with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
        xs = [x.detach().requires_grad_(True) for x in xs]
        ys = [fn(x) for fn, x in zip(fns, xs)]
        us = [torch.zeros_like(y, requires_grad=True) for y in ys]
        jt_us = torch.autograd.grad(ys, xs, us, create_graph=True)  # linear in u: J^T u
        active = list(range(len(xs)))
        for _ in range(iters):
            jv = torch.autograd.grad([jt_us[i] for i in active], [us[i] for i in active],
                                     [procs[i].q for i in active], retain_graph=True)
            w = torch.autograd.grad([ys[i] for i in active], [xs[i] for i in active], jv, retain_graph=True)
            active = [i for i, wi in zip(active, w) if not procs[i].step(wi, tol)]
            if not active:
                break
    return [p.norm() for p in procs]


@torch.no_grad()
def ln_jacobian_factor(ln, u: torch.Tensor) -> float:
    """max over tokens of ||g||_inf / sqrt(var(u_t) + eps) (LayerNorm; RMSNorm: the mean square
    instead of the variance): the norm acts token by token, so this bounds the norm of its
    Jacobian over the whole batch (docs/bounds.md, B1)."""
    u = u.double()
    spread = u.var(dim=-1, unbiased=False) if isinstance(ln, LayerNorm) else (u ** 2).mean(dim=-1)
    return (ln.weight.detach().abs().max().double() / torch.sqrt(spread.min() + ln.eps)).item()


def _row(point, layer, k, quantity, value) -> dict:
    return {"point": point, "layer": layer, "sublayer": k, "quantity": quantity, "value": value}


def stream_rows(moments: list[dict], adjoint_norms: list[float]) -> list[dict]:
    """The moments and the adjoint norm ||dLoss/dx^(k)|| of every probe point x^(k)."""
    rows = []
    for k, m in enumerate(moments):
        point, layer = point_of(k)
        rows += [_row(point, layer, k, q, v) for q, v in m.items()]
        rows.append(_row(point, layer, k, "adjoint_norm", adjoint_norms[k]))
    return rows


def parameter_rows(model: GPT, named: list, grad_norms: list[float], weight_norms: dict[str, float]) -> list[dict]:
    """Per parameter: gradient norm, spectral norm (matrices), LN statistics; per block: gradient norm."""
    rows, block_sq = [], {}
    for (name, p), gn in zip(named, grad_norms):
        short, layer, k = param_location(name)
        rows.append(_row(short, layer, k, "grad_norm", gn))
        if layer >= 0:
            block_sq[layer] = block_sq.get(layer, 0.0) + gn ** 2
        if p.ndim == 2:
            rows.append(_row(short, layer, k, "spectral_norm", weight_norms[name]))
        if short.endswith("ln_in.weight") or short.endswith("ln_out.weight") or name == "ln_f.weight":
            ln = model.get_submodule(name.rsplit(".", 1)[0])
            rows += [_row(short.rsplit(".", 1)[0], layer, k, q, v) for q, v in ln_stats(ln).items()]
    return rows + [_row("block", layer, -1, "grad_norm", math.sqrt(sq)) for layer, sq in sorted(block_sq.items())]


@torch.no_grad()
def branch_norms_max(model: GPT, hidden: list[torch.Tensor]) -> list[float]:
    """max over tokens of ||branch(x^(k-1))_t||, k = 1..K: the term dt multiplies (its slope bound)."""
    return [r.branch(hidden[k]).double().norm(dim=-1).max().item() for k, r in enumerate(model.sublayers())]


def jacobian_rows(model: GPT, hidden: list[torch.Tensor], iters: int, tol: float):
    """Lanczos estimates of each sub-layer's branch Jacobian norm (a norm on the sum: also the
    whole step) and the norms' Jacobian factors: (rows, jac_branch, jac_step)."""
    subs = model.sublayers()
    posts = [k for k, r in enumerate(subs) if r.placement in NORM_ON_SUM]  # step != x + dt*branch
    norms = operator_norms([r.branch for r in subs] + [subs[k] for k in posts],
                           hidden[:len(subs)] + [hidden[k] for k in posts], iters, tol)
    jac_branch, jac_step = norms[:len(subs)], norms[len(subs):]
    rows = []
    for k, r in enumerate(subs):
        x = hidden[k]
        point, layer = point_of(k + 1)
        rows.append(_row(point, layer, k + 1, "jac_branch_est", jac_branch[k]))
        if r.placement in NORM_ON_SUM:
            rows.append(_row(point, layer, k + 1, "jac_step_est", jac_step[posts.index(k)]))
        ln_in = getattr(r, "ln_in", None)  # a screened block of the user's own may have none
        with torch.no_grad():
            if ln_in is not None:
                rows.append(_row(point, layer, k + 1, "ln_in_jac_factor", ln_jacobian_factor(ln_in, x)))
            if r.placement in NORM_ON_BRANCH + NORM_ON_SUM:  # the output norm's input
                y = r.f(ln_in(x) if ln_in is not None else x)
                u = y if r.placement in NORM_ON_BRANCH else r.alpha * x + r.dt * y
                rows.append(_row(point, layer, k + 1, "ln_out_jac_factor", ln_jacobian_factor(r.ln_out, u)))
    return rows, jac_branch, jac_step


def float64_measurement(model: GPT, idx: torch.Tensor, targets: torch.Tensor) -> dict:
    """The probe batch re-evaluated by a float64 copy of the model (the same weights, exactly
    representable): the measured side of the bound rows, so that their rounding allowance is
    float64's (docs/bounds.md, "Rounding"). {'model', 'hidden', 'moments', 'branch_norm_max',
    'adjoints' (dLoss/dx^(k), per sequence)}."""
    m64 = copy.deepcopy(model).double().eval()
    hidden: list[torch.Tensor] = []
    with torch.enable_grad():
        _, loss = m64(idx, targets, hidden=hidden)
        adjoints = torch.autograd.grad(loss, hidden)
    hidden = [h.detach() for h in hidden]
    return {"model": m64, "hidden": hidden, "moments": stacked_moments(hidden),
            "branch_norm_max": branch_norms_max(m64, hidden), "adjoints": [a.detach() for a in adjoints]}


def backward_by_sublayer(model: GPT, idx: torch.Tensor, targets: torch.Tensor, named: list):
    """(loss, x^(0..K), ||dLoss/dx^(k)|| for every k, each parameter of ``named``'s gradient norm),
    holding only the stream and one sub-layer's activations: a forward pass without a graph keeps
    x^(k); then, from the head down, each sub-layer's step is recomputed from its stored input and
    differentiated alone, its input's gradient carried to the sub-layer below and its parameters'
    gradients reduced to norms and dropped. The same operations as one backward pass of the whole
    model, so the same numbers (a test compares them bit for bit); no parameter gradient is ever
    held for the whole model."""
    with torch.no_grad():
        hidden = [model.embed(idx)]
        for r in model.sublayers():
            hidden.append(r(hidden[-1]))
    grad_norm: dict[int, float] = {}

    def differentiate(module_params, fn, x_in, grad_out=None):
        x = x_in.detach().requires_grad_(x_in.is_floating_point())
        out = fn(x)
        out.backward(grad_out)
        for p in module_params:  # tied weights (wte = lm_head) keep their gradient until their last use
            if p.grad is not None and p is not model.wte.weight:
                grad_norm[id(p)] = norm64(p.grad).item()
                p.grad = None
        return out.detach(), x.grad

    head = [p for m in (model.ln_f, model.lm_head) if m is not None for p in m.parameters()]
    loss, g = differentiate(head, lambda x: lm_loss(model.head(x), targets), hidden[-1])
    adjoint_norms = [norm64(g).item()]
    for r in reversed(model.sublayers()):
        _, g = differentiate(r.parameters(), r, hidden[len(hidden) - 1 - len(adjoint_norms)], g)
        adjoint_norms.append(norm64(g).item())
    differentiate([model.wte.weight, model.wpe.weight], model.embed, idx, g)
    grad_norm[id(model.wte.weight)] = norm64(model.wte.weight.grad).item()
    model.wte.weight.grad = None
    return loss, hidden, adjoint_norms[::-1], [grad_norm[id(p)] for _, p in named]


def probe(model: GPT, idx: torch.Tensor, targets: torch.Tensor, jacobian_iters: int = 32,
          jacobian_tol: float = 0.03, float64: bool = False, recompute: bool = False) -> dict:
    """Measure one probe batch. Returns {'rows': [...], 'hidden': [x^(k)], 'moments': [{...}], 'loss': float,
    'adjoint': [||p^(k)||], 'weight_norms': {name: spectral norm}, 'jac_branch': [...], 'jac_step': [...],
    'branch_norm_max': [...]} (the Jacobian lists empty when jacobian_iters is 0), and with ``float64``
    the re-evaluation ``float64_measurement`` under 'float64'. Rows are dicts with point, layer,
    sublayer, quantity, value (always of the model as it is). With ``recompute`` the backward pass
    goes one sub-layer at a time (``backward_by_sublayer``: the same numbers in a fraction of the
    memory, for checkpoints of GPT-2 XL's size)."""
    was_training = model.training
    model.eval()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if recompute:
        loss, hidden, adjoint_norms, grad_norms = backward_by_sublayer(model, idx, targets, named)
    else:
        hidden: list[torch.Tensor] = []
        _, loss = model(idx, targets, hidden=hidden)
        grads = torch.autograd.grad(loss, hidden + [p for _, p in named])
        adjoints, pgrads = grads[:len(hidden)], grads[len(hidden):]
        hidden = [h.detach() for h in hidden]
        adjoint_norms = torch.stack([norm64(p) for p in adjoints]).tolist()  # one host sync
        grad_norms = torch.stack([norm64(g) for g in pgrads]).tolist()

    moments = stacked_moments(hidden)
    matrices = [(n, p) for n, p in named if p.ndim == 2]
    weight_norms = dict(zip([n for n, _ in matrices], spectral_norms([p for _, p in matrices])))
    rows = stream_rows(moments, adjoint_norms) + parameter_rows(model, named, grad_norms, weight_norms)
    branch_max = branch_norms_max(model, hidden)
    rows += [_row(*point_of(k), k, "branch_norm_max", v) for k, v in enumerate(branch_max, start=1)]
    jac_branch, jac_step = [], []
    if jacobian_iters > 0:
        jac, jac_branch, jac_step = jacobian_rows(model, hidden, jacobian_iters, jacobian_tol)
        rows += jac
    model.train(was_training)
    out = {"rows": rows, "hidden": hidden, "moments": moments, "loss": loss.item(), "adjoint": adjoint_norms,
           "weight_norms": weight_norms, "jac_branch": jac_branch, "jac_step": jac_step,
           "branch_norm_max": branch_max}
    if float64:
        out["float64"] = float64_measurement(model, idx, targets)
    return out
