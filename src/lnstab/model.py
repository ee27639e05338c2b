"""A small GPT whose norm placement and residual step are parameters.

Everything the paper varies lives in one class, ``Residual`` (docs/theory.md, section 1):

    pre     :  x <- x + dt * F(N(x))
    peri    :  x <- x + dt * N_out(F(N_in(x)))      (Gemma 2/3's "sandwich" norm is this one)
    post    :  x <- N(x + dt * F(x))
    none    :  x <- x + dt * F(x)
    output  :  x <- x + dt * N(F(x))                 (OLMo 2's reordered norm)
    mix     :  post in the first ceil(mix_fraction * L) blocks, pre after (Mix-LN)
    deepnorm:  x <- N(alpha * x + dt * F(x)),  alpha = (2L)^(1/4)   (DeepNet)

F is a block's attention or MLP; N is LayerNorm or RMSNorm (``model.norm``). Blocks, init and
the head follow nanoGPT's model.py.

Runs trained together (lnstab.groups) are this same model with a leading run axis on every
parameter and input (``GPT.stack``): each layer below reads either form, and each run's own model
is a view of the stacked weights, so probes, bounds and checkpoints see one run at a time.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .config import PLACEMENTS, ModelConfig

# which norms a placement has: on the branch input, on the branch output, on the sum (the step
# then is N(alpha x + dt F) rather than x + dt * branch); "mix" is resolved per block to pre/post
NORM_ON_INPUT = ("pre", "peri")
NORM_ON_BRANCH = ("peri", "output")
NORM_ON_SUM = ("post", "deepnorm")
# the stream leaves the last block unnormalised: the head reads it through a final norm
FINAL_NORM = ("pre", "peri", "output", "mix")


def per_run(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A stacked per-run vector (R, C) shaped to broadcast over x (R, ..., C)."""
    return v.view(v.shape[0], *([1] * (x.ndim - 2)), v.shape[-1])


def linear(x, weight, bias):
    """x W^T + b. Stacked weights (R, out, in) act on x (R, ..., in), each run with its own: one
    batched product over the runs (equal to each run's own product: tests/test_groups.py)."""
    if weight.ndim == 2:
        return F.linear(x, weight, bias)
    flat, wt = x.reshape(weight.shape[0], -1, x.shape[-1]), weight.transpose(1, 2)
    y = torch.bmm(flat, wt) if bias is None else torch.baddbmm(bias.unsqueeze(1), flat, wt)
    return y.view(*x.shape[:-1], weight.shape[1])


class Linear(nn.Linear):
    def forward(self, x):
        return linear(x, self.weight, self.bias)


class Embedding(nn.Embedding):
    def forward(self, idx):
        if self.weight.ndim == 2:
            return F.embedding(idx, self.weight)
        # stacked tables (R, V, C): run r's tokens index rows r*V.. of one table
        R, V, C = self.weight.shape
        offsets = torch.arange(R, device=idx.device).view(R, *([1] * (idx.ndim - 1))) * V
        return F.embedding(idx + offsets, self.weight.reshape(R * V, C))


class LayerNorm(nn.Module):
    """LayerNorm over the last dimension with an optional bias (biased variance, eps inside the sqrt)."""

    def __init__(self, d: int, bias: bool, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d)) if bias else None
        self.eps = eps

    def forward(self, x):
        if self.weight.ndim == 1:
            return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)
        # per-run gains: the affine part as one fused multiply-add, the kernel's own arithmetic
        y, w = F.layer_norm(x, self.weight.shape[-1:], None, None, self.eps), per_run(self.weight, x)
        return y * w if self.bias is None else torch.addcmul(per_run(self.bias, x), y, w)


class RMSNorm(nn.Module):
    """RMSNorm over the last dimension (eps inside the sqrt): no centring and no bias."""

    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = None  # read by the bounds as a zero bias
        self.eps = eps

    def forward(self, x):
        if self.weight.ndim == 1:
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        return F.rms_norm(x, self.weight.shape[-1:], None, self.eps) * per_run(self.weight, x)


def make_norm(cfg: ModelConfig) -> nn.Module:
    return RMSNorm(cfg.d_model, cfg.ln_eps) if cfg.norm == "rmsnorm" else LayerNorm(cfg.d_model, cfg.bias, cfg.ln_eps)


def block_placements(cfg: ModelConfig) -> list[str]:
    """The placement of each block: ``mix`` is Post-LN in its first ceil(mix_fraction * L) blocks."""
    if cfg.placement != "mix":
        return [cfg.placement] * cfg.n_layer
    n_post = math.ceil(cfg.mix_fraction * cfg.n_layer)
    return ["post"] * n_post + ["pre"] * (cfg.n_layer - n_post)


def deepnorm_alpha(n_layer: int) -> float:
    """DeepNet's residual scale for a decoder of n_layer blocks: (2 n_layer)^(1/4)."""
    return (2 * n_layer) ** 0.25


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.fused = cfg.fused_attention

    def forward(self, x):
        *lead, T, C = x.shape  # lead: (B,) or, stacked, (R, B): every run's sequences in one call
        q, k, v = self.qkv(x).split(C, dim=-1)
        q, k, v = (t.reshape(-1, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if self.fused:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # the explicit equation; slower, kept for checking the fused kernel
            att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            y = att.masked_fill(~mask, float("-inf")).softmax(dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(*lead, T, C))


class MLP(nn.Module):
    tokenwise = True  # acts on every token alone: its step's Jacobian is block diagonal over tokens

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = Linear(cfg.d_model, 4 * cfg.d_model, bias=cfg.bias)
        self.proj = Linear(4 * cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.gelu = "none" if cfg.gelu == "exact" else "tanh"  # F.gelu's name of the approximation

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate=self.gelu))


class Residual(nn.Module):
    """One residual sub-layer: the single place where norm placement and the step dt act.

    The interface a screened block implements (``lnstab screen --block module:Class``):
    constructed as ``Class(f, cfg, placement)``, it has ``f``, ``dt``, ``placement``,
    ``branch(x)`` (the term the step adds, before dt) and ``forward(x)`` (the step)."""

    def __init__(self, f: nn.Module, cfg: ModelConfig, placement: str | None = None):
        super().__init__()
        placement = placement or cfg.placement
        assert placement in PLACEMENTS and placement != "mix", placement
        # with fold_dt the step is 1 and dt lives in the last map's init and optimizer (GPT, train);
        # in a stacked model (GPT.stack) dt is a per-run tensor (R, 1, 1, 1)
        self.f, self.placement, self.dt = f, placement, 1.0 if cfg.fold_dt else cfg.dt
        # the weight of the stream in the sum: 1, or DeepNet's alpha
        self.alpha = deepnorm_alpha(cfg.n_layer) if placement == "deepnorm" else 1.0
        # ln_in normalises the branch input (pre, peri); ln_out the branch output (peri,
        # output) or the sum (post, deepnorm). "ln" for either norm.
        self.ln_in = make_norm(cfg) if placement in NORM_ON_INPUT else None
        self.ln_out = make_norm(cfg) if placement in NORM_ON_BRANCH + NORM_ON_SUM else None

    def last_map(self) -> nn.Module:
        """The branch's last affine map: the output norm where one ends the branch, else F's projection."""
        return self.ln_out if self.placement in NORM_ON_BRANCH else self.f.proj

    def branch(self, x):
        """The term the step adds: F(N(x)) | N_out(F(N_in(x))) | F(x) | N(F(x))."""
        y = self.f(self.ln_in(x) if self.ln_in is not None else x)
        return self.ln_out(y) if self.placement in NORM_ON_BRANCH else y

    def forward(self, x):
        stream = x if self.alpha == 1.0 else self.alpha * x
        # x + dt * branch(x), one fused op (the same multiply-add for a per-run dt: addcmul)
        x = (torch.addcmul(stream, self.branch(x), self.dt) if torch.is_tensor(self.dt)
             else torch.add(stream, self.branch(x), alpha=self.dt))
        return self.ln_out(x) if self.placement in NORM_ON_SUM else x


def last_map_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of every sub-layer's last map (``Residual.last_map``), in order."""
    return [p for r in model.sublayers() if hasattr(r, "last_map") for p in r.last_map().parameters()]


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, placement: str, residual: type = Residual):
        super().__init__()
        self.attn = residual(CausalSelfAttention(cfg), cfg, placement)
        self.mlp = residual(MLP(cfg), cfg, placement)

    def forward(self, x):
        return self.mlp(self.attn(x))


def lm_loss(logits, targets):
    """The language-model loss: mean cross-entropy over every token, in float32."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig, residual: type = Residual):
        super().__init__()
        assert cfg.vocab_size is not None, "model.vocab_size must be set (from the tokenizer)"
        self.cfg = cfg
        self.runs: int | None = None  # R of a stacked model (GPT.stack); None: one run
        self.wte = Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = Embedding(cfg.block_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, p, residual) for p in block_placements(cfg))
        self.ln_f = make_norm(cfg) if cfg.placement in FINAL_NORM else None
        self.lm_head = Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying
        # recompute each sub-layer's activations in the backward pass instead of keeping them
        # (train.activation_checkpointing; set by the trainer, not part of the model's equations)
        self.activation_checkpointing = False
        self.apply(self._init_weights)
        # GPT-2: residual branches start scaled down by 1/sqrt(number of sub-layers). Where a
        # norm normalises the branch output (peri, output), scaling its projection only drives the
        # norm's input under ln_eps, so by default the scale goes to the norm's gain
        # (docs/bounds.md). DeepNet instead scales the value, output and MLP maps by
        # beta = (8L)^(-1/4) (Xavier-normal init with that gain).
        depth_scale = 1 / math.sqrt(2 * cfg.n_layer)
        normalised = cfg.placement in NORM_ON_BRANCH
        for name, p in self.named_parameters():
            if cfg.placement == "deepnorm":
                self._deepnorm_init(name, p, (8 * cfg.n_layer) ** -0.25)
                continue
            if name.endswith("f.proj.weight") and (not normalised or cfg.normalised_branch_init == "proj"):
                nn.init.normal_(p, mean=0.0, std=0.02 * depth_scale)
            if name.endswith("ln_out.weight") and normalised and cfg.normalised_branch_init == "gain":
                nn.init.constant_(p, depth_scale)
        scale = cfg.last_map_init_scale * (cfg.dt if cfg.fold_dt else 1.0)
        if scale != 1.0:
            with torch.no_grad():
                for p in last_map_parameters(self):
                    p.mul_(scale)

    @staticmethod
    def _deepnorm_init(name: str, p: nn.Parameter, beta: float) -> None:
        if name.endswith("qkv.weight"):  # three d x d maps, each Xavier: queries and keys at gain 1, values at beta
            C = p.shape[1]
            for i, gain in enumerate((1.0, 1.0, beta)):
                nn.init.xavier_normal_(p.data[i * C:(i + 1) * C], gain=gain)
        elif name.endswith(("f.proj.weight", "f.fc.weight")):
            nn.init.xavier_normal_(p, gain=beta)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def sublayers(self) -> list[Residual]:
        """The K = 2L residual sub-layers in order: attn_0, mlp_0, attn_1, ..."""
        return [r for b in self.blocks for r in (b.attn, b.mlp)]

    @classmethod
    def stack(cls, models: list["GPT"]) -> "GPT":
        """One model holding ``models`` (one shape, any dt, init and weights) along a leading run
        axis: input (R, B, T), logits (R, B, T, V), one loss per run. Each model's parameters become
        views of its run's slice, so each stays that run's own model (probes, bounds, checkpoints)
        while the stacked one trains."""
        stacked = copy.deepcopy(models[0])
        stacked.runs = len(models)
        for name, _ in models[0].named_parameters():  # tied weights once: wte = lm_head
            owner, _, attr = name.rpartition(".")
            p = nn.Parameter(torch.stack([m.get_parameter(name).detach() for m in models]))
            setattr(stacked.get_submodule(owner), attr, p)
            for r, m in enumerate(models):
                m.get_parameter(name).data = p.data[r]
        stacked.lm_head.weight = stacked.wte.weight
        for i, sub in enumerate(stacked.sublayers()):
            sub.dt = torch.tensor([float(m.sublayers()[i].dt) for m in models]).view(-1, 1, 1, 1)
        return stacked

    def embed(self, idx):
        T = idx.size(-1)
        if T > self.cfg.block_size:
            raise ValueError(f"sequence length {T} exceeds model.block_size={self.cfg.block_size}")
        pos = torch.arange(T, device=idx.device)
        if self.runs is None:
            return self.wte(idx) + self.wpe(pos)
        return self.wte(idx) + self.wpe(pos.expand(self.runs, T)).unsqueeze(1)

    def head(self, x):
        return self.lm_head(self.ln_f(x) if self.ln_f is not None else x)

    def forward(self, idx, targets=None, hidden: list | None = None):
        """Logits (and mean cross-entropy if targets). If ``hidden`` is a list, the residual
        stream x^(0..K) (embeddings, then after every sub-layer) is appended to it."""
        x = self.embed(idx)
        if hidden is not None:
            hidden.append(x)
        recompute = self.activation_checkpointing and hidden is None and torch.is_grad_enabled()
        for r in self.sublayers():
            # no RNG inside a sub-layer, so the recomputation is exact: losses equal either way
            x = checkpoint(r, x, use_reentrant=False) if recompute else r(x)
            if hidden is not None:
                hidden.append(x)
        logits = self.head(x)
        if targets is None:
            return logits, None
        if self.runs is None:
            return logits, lm_loss(logits, targets)
        return logits, torch.stack([lm_loss(logits[r], targets[r]) for r in range(self.runs)])

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters()) - self.wpe.weight.numel()

    def flops_per_token(self) -> float:
        """Training FLOPs per token (6N + attention), as in the PaLM appendix / nanoGPT."""
        c = self.cfg
        return 6 * self.num_params() + 12 * c.n_layer * c.d_model * c.block_size
