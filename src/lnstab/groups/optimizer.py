"""One optimizer step of a training group: per-run gradient clipping and AdamW with per-run values,
each in torch's own arithmetic, run by run."""
from __future__ import annotations

import torch

from ..model import GPT

def per_run(values, like: torch.Tensor) -> torch.Tensor:
    """Per-run Python floats as a tensor (R, 1, ..., 1) of ``like``'s dtype, broadcasting over it."""
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, *([1] * (like.ndim - 1)))


class StackedAdamW:
    """AdamW over a stacked model with each run's own learning rate, weight decay and eps per
    parameter (its optimizer's param group): torch's foreach AdamW, operation for operation, with
    the run's scalars as per-run tensors. The moments are stacked; each member optimizer's state
    holds views of its slice, so a member's checkpoint is an ordinary AdamW state."""

    def __init__(self, stacked: GPT, members: list):
        self.params = list(stacked.parameters())
        owned = [list(m.model.parameters()) for m in members]
        opt0 = members[0].optimizer.defaults
        self.beta1, self.beta2 = opt0["betas"]
        self.step_count = int(_state_step(members[0].optimizer, owned[0][0]))
        self.members = members
        # torch's per-parameter step counts, one tensor each (a shared one would be counted once
        # per parameter by a run that resumes alone)
        self.step_tensors = []
        # per (parameter, run): lr_scale, weight decay, eps from the run's own param group
        self.hyper = []
        for i in range(len(self.params)):
            groups = [_group_of(m.optimizer, ps[i]) for m, ps in zip(members, owned)]
            self.hyper.append([(g.get("lr_scale", 1.0), g["weight_decay"], g["eps"]) for g in groups])
        self.exp_avg, self.exp_avg_sq = [], []
        for i, p in enumerate(self.params):
            for key, store in (("exp_avg", self.exp_avg), ("exp_avg_sq", self.exp_avg_sq)):
                store.append(torch.stack([m.optimizer.state[ps[i]][key] if ps[i] in m.optimizer.state
                                          else torch.zeros_like(ps[i]) for m, ps in zip(members, owned)]))
        for r, (m, ps) in enumerate(zip(members, owned)):
            for i, q in enumerate(ps):
                self.step_tensors.append(torch.tensor(float(self.step_count)))
                m.optimizer.state[q] = {"step": self.step_tensors[-1], "exp_avg": self.exp_avg[i][r],
                                        "exp_avg_sq": self.exp_avg_sq[i][r]}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lrs: list[float]) -> None:
        """One AdamW step of every run, run r at learning rate lrs[r] (before its lr_scale)."""
        self.step_count += 1
        torch._foreach_add_(self.step_tensors, 1.0)
        b1, b2 = self.beta1, self.beta2
        bc1, bc2_sqrt = 1 - b1 ** self.step_count, (1 - b2 ** self.step_count) ** 0.5
        for p, m, v, hyper in zip(self.params, self.exp_avg, self.exp_avg_sq, self.hyper):
            g = p.grad
            lr = [lr_r * scale for lr_r, (scale, _, _) in zip(lrs, hyper)]
            if any(wd for _, wd, _ in hyper):  # decoupled decay; x * 1.0 leaves an undecayed run exact
                p.mul_(per_run([1 - a * wd for a, (_, wd, _) in zip(lr, hyper)], p))
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = v.sqrt().div_(bc2_sqrt).add_(per_run([eps for _, _, eps in hyper], p))
            # addcdiv's own order: p + (step_size * m) / denom
            p.add_(m.mul(per_run([(a / bc1) * -1 for a in lr], p)).div_(denom))


def _state_step(optimizer, p) -> float:
    state = optimizer.state.get(p)
    return float(state["step"]) if state else 0.0


def _group_of(optimizer, p) -> dict:
    return next(g for g in optimizer.param_groups if any(q is p for q in g["params"]))


def clip_per_run(params: list[torch.Tensor], members: list) -> list[float]:
    """Each run's global gradient norm (before clipping), its slice clipped to its own
    train.grad_clip: torch's clip_grad_norm_ arithmetic, run by run."""
    R = len(members)
    norms = torch.stack([torch.linalg.vector_norm(p.grad.view(R, -1), dim=1) for p in params], dim=1)
    totals, coefs = [], []
    for r, m in enumerate(members):
        total = torch.linalg.vector_norm(norms[r].contiguous())
        clip = m.cfg.train.grad_clip
        coefs.append(torch.clamp(clip / (total + 1e-6), max=1.0) if clip > 0 else torch.tensor(1.0))
        totals.append(total.item())
    if any(m.cfg.train.grad_clip > 0 for m in members):
        coef = torch.stack(coefs).to(params[0].grad.dtype)
        for p in params:
            p.grad.mul_(coef.view(-1, *([1] * (p.grad.ndim - 1))))
    return totals


