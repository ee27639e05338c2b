"""Residual sub-layers built to give one screen verdict each, whatever their weights
(tests/test_screen.py): lnstab.model.Residual's interface, Class(f, cfg, placement)."""
import torch
import torch.nn as nn


class _Block(nn.Module):
    placement = "built"

    def __init__(self, f, cfg, placement):
        super().__init__()
        self.f, self.dt = f, cfg.dt

    def branch(self, x):
        return self.f(x)


class Doubling(_Block):
    """x + dt * x: the stream grows by (1 + dt) per sub-layer, exactly, at any weights (F is applied
    to zeros, so that its weights are in the graph and take part in training)."""

    def forward(self, x):
        return x + self.dt * x + 0.0 * self.f(torch.zeros_like(x))


class Collapsing(_Block):
    """Every token of every sequence becomes one fixed vector: the data-wise variance is zero, and
    no gradient reaches the input."""

    def __init__(self, f, cfg, placement):
        super().__init__(f, cfg, placement)
        self.register_buffer("pattern", torch.linspace(-1.0, 1.0, cfg.d_model))

    def forward(self, x):
        return 0.0 * x + self.pattern + 0.0 * self.f(torch.zeros_like(x))


class SequenceCollapsing(_Block):
    """Every position of a sequence becomes that sequence's mean over positions: the variance
    across sequences stays (each sequence its own vector), the variance within a sequence is zero."""

    def forward(self, x):
        return x.mean(dim=1, keepdim=True).expand_as(x) + 0.0 * self.f(torch.zeros_like(x))


class Overflowing(_Block):
    """x * 1e30: float32 overflows within two sub-layers."""

    def forward(self, x):
        return x * 1e30 + self.dt * self.f(x)
