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

import math

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from .model import GPT, LayerNorm

HIDDEN_QUANTITIES = ("mean_abs", "var_entry", "var_data", "mean_norm", "max_abs")


def moments(x: torch.Tensor) -> dict[str, float]:
    """THEORY.md section 2 on a (..., d) tensor, flattened to N tokens x d entries.
    Variances are biased (1/d over entries, 1/N over tokens). Computed in float64."""
    X = x.detach().reshape(-1, x.shape[-1]).double()
    return {
        "mean_abs": X.abs().mean().item(),
        "var_entry": X.var(dim=1, unbiased=False).mean().item(),
        "var_data": X.var(dim=0, unbiased=False).mean().item(),
        "mean_norm": X.norm(dim=1).mean().item(),
        "max_abs": X.abs().max().item(),
    }


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


def ln_stats(ln: LayerNorm) -> dict[str, float]:
    """The LN parameters the forward bounds read (THEORY.md section 3)."""
    g = ln.weight.detach().double()
    b = ln.bias.detach().double() if ln.bias is not None else torch.zeros_like(g)
    return {
        "g_inf": g.abs().max().item(),
        "g_rms": g.norm().item() / math.sqrt(g.numel()),
        "b_norm": b.norm().item(),
        "b_mean_abs": b.abs().mean().item(),
        "b_std": b.std(unbiased=False).item(),
    }


def spectral_norm(w: torch.Tensor) -> float:
    return torch.linalg.matrix_norm(w.detach().double(), ord=2).item()


def operator_norm(fn, x: torch.Tensor, iters: int, tol: float, seed: int = 0) -> float:
    """Estimate ||J|| of fn at x (over the whole tensor) by power iteration on J^T J.

    Each iterate ||J v|| with ||v|| = 1 is a lower bound on ||J||, so the estimate approaches
    the norm from below; it stops after ``iters`` iterations or when it changes by less than
    ``tol`` (relative). J v comes from differentiating the vector-Jacobian product J^T u with
    respect to u (double backward; several times faster here than forward-mode AD), on graphs
    built once. Its own generator: the training RNG is never touched."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
    v = v / v.norm()
    best = 0.0
    # sdpa's fused CPU kernel has no double backward; the math backend is the same function
    with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
        x = x.detach().requires_grad_(True)
        y = fn(x)
        u = torch.zeros_like(y, requires_grad=True)
        (jt_u,) = torch.autograd.grad(y, x, u, create_graph=True)  # linear in u: J^T u
        for _ in range(iters):
            (jv,) = torch.autograd.grad(jt_u, u, v, retain_graph=True)
            sigma = jv.norm().item()
            (w,) = torch.autograd.grad(y, x, jv, retain_graph=True)
            converged = abs(sigma - best) <= tol * max(sigma, 1e-30)
            best = max(best, sigma)
            if converged or w.norm() == 0:
                break
            v = w / w.norm()
    return best


@torch.no_grad()
def ln_jacobian_factor(ln: LayerNorm, u: torch.Tensor) -> float:
    """max over tokens of ||g||_inf / sqrt(var(u_t) + eps): the LN acts token by token, so this
    bounds the norm of its Jacobian over the whole batch (docs/bounds.md, B1)."""
    var = u.double().var(dim=-1, unbiased=False)
    return (ln.weight.detach().abs().max().double() / torch.sqrt(var.min() + ln.eps)).item()


def probe(model: GPT, idx: torch.Tensor, targets: torch.Tensor, jacobian_iters: int = 20,
          jacobian_tol: float = 1e-4) -> dict:
    """Measure one probe batch. Returns {'rows': [...], 'hidden': [x^(k)], 'moments': [{...}], 'loss': float,
    'adjoint': [||p^(k)||], 'jac_branch': [...], 'jac_step': [...]} (the last two empty when
    jacobian_iters is 0). Rows are dicts with point, layer, sublayer, quantity, value."""
    was_training = model.training
    model.eval()
    hidden: list[torch.Tensor] = []
    _, loss = model(idx, targets, hidden=hidden)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, hidden + [p for _, p in named])
    adjoints, pgrads = grads[:len(hidden)], grads[len(hidden):]
    hidden = [h.detach() for h in hidden]
    rows = []

    def add(point, layer, k, quantity, value):
        rows.append({"point": point, "layer": layer, "sublayer": k, "quantity": quantity, "value": value})

    adjoint_norms, hidden_moments = [], [moments(h) for h in hidden]
    for k, (h, p) in enumerate(zip(hidden, adjoints)):
        point, layer = point_of(k)
        for q, v in hidden_moments[k].items():
            add(point, layer, k, q, v)
        adjoint_norms.append(p.double().norm().item())
        add(point, layer, k, "adjoint_norm", adjoint_norms[-1])

    block_sq: dict[int, float] = {}
    for (name, p), g in zip(named, pgrads):
        short, layer, k = param_location(name)
        gn = g.double().norm().item()
        add(short, layer, k, "grad_norm", gn)
        if layer >= 0:
            block_sq[layer] = block_sq.get(layer, 0.0) + gn ** 2
        if p.ndim == 2:
            add(short, layer, k, "spectral_norm", spectral_norm(p))
        if short.endswith("ln_in.weight") or short.endswith("ln_out.weight") or name == "ln_f.weight":
            ln = model.get_submodule(name.rsplit(".", 1)[0])
            for q, v in ln_stats(ln).items():
                add(short.rsplit(".", 1)[0], layer, k, q, v)
    for layer, sq in sorted(block_sq.items()):
        add("block", layer, -1, "grad_norm", math.sqrt(sq))

    jac_branch, jac_step = [], []
    if jacobian_iters > 0:
        for k, r in enumerate(model.sublayers()):
            x = hidden[k]
            point, layer = point_of(k + 1)
            jac_branch.append(operator_norm(r.branch, x, jacobian_iters, jacobian_tol))
            add(point, layer, k + 1, "jac_branch_est", jac_branch[-1])
            if r.placement == "post":  # the step is not x + dt*branch: its own Jacobian
                jac_step.append(operator_norm(r, x, jacobian_iters, jacobian_tol))
                add(point, layer, k + 1, "jac_step_est", jac_step[-1])
            with torch.no_grad():
                if r.ln_in is not None:
                    add(point, layer, k + 1, "ln_in_jac_factor", ln_jacobian_factor(r.ln_in, x))
                if r.placement == "peri":
                    add(point, layer, k + 1, "ln_out_jac_factor", ln_jacobian_factor(r.ln_out, r.f(r.ln_in(x))))
                if r.placement == "post":
                    add(point, layer, k + 1, "ln_out_jac_factor", ln_jacobian_factor(r.ln_out, x + r.dt * r.f(x)))
    model.train(was_training)
    return {"rows": rows, "hidden": hidden, "moments": hidden_moments, "loss": loss.item(), "adjoint": adjoint_norms,
            "jac_branch": jac_branch, "jac_step": jac_step}
