"""The model computes exactly the equations of docs/theory.md section 1, for every placement."""
import math
from pathlib import Path

import pytest
import torch

from lnstab.config import NORMS, PLACEMENTS, ModelConfig
from lnstab.model import GPT


def make(placement, dt=1.0, n_layer=2, d=16, heads=2, bias=True, seed=0, norm="layernorm", mix_fraction=0.25):
    torch.manual_seed(seed)
    cfg = ModelConfig(placement=placement, dt=dt, n_layer=n_layer, n_head=heads, d_model=d,
                      block_size=8, vocab_size=11, bias=bias, norm=norm, mix_fraction=mix_fraction)
    model = GPT(cfg).double()
    # non-trivial LN gains and biases, so an LN that is skipped or misplaced shows up
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name:
                p.copy_(torch.randn_like(p))
    return model


def ln_by_hand(u, ln):
    if type(ln).__name__ == "RMSNorm":  # no centring, no bias
        assert ln.bias is None
        return ln.weight * u / torch.sqrt((u ** 2).mean(-1, keepdim=True) + ln.eps)
    mu = u.mean(-1, keepdim=True)
    var = ((u - mu) ** 2).mean(-1, keepdim=True)  # biased
    return ln.weight * (u - mu) / torch.sqrt(var + ln.eps) + ln.bias


def attention_by_hand(u, attn):
    B, T, C = u.shape
    H, hd = attn.n_head, C // attn.n_head
    qkv = u @ attn.qkv.weight.T + attn.qkv.bias
    q, k, v = qkv.split(C, dim=-1)
    out = []
    for h in range(H):
        s = slice(h * hd, (h + 1) * hd)
        scores = q[..., s] @ k[..., s].transpose(-1, -2) / math.sqrt(hd)
        scores = scores.masked_fill(torch.ones(T, T).triu(1).bool(), -math.inf)
        out.append(scores.softmax(-1) @ v[..., s])
    return torch.cat(out, -1) @ attn.proj.weight.T + attn.proj.bias


def mlp_by_hand(u, mlp):
    a = u @ mlp.fc.weight.T + mlp.fc.bias
    gelu = 0.5 * a * (1 + torch.erf(a / math.sqrt(2)))
    return gelu @ mlp.proj.weight.T + mlp.proj.bias


def step_by_hand(placement, dt, x, r, f, n_layer=2):
    if placement == "pre":
        return x + dt * f(ln_by_hand(x, r.ln_in))
    if placement == "peri":
        return x + dt * ln_by_hand(f(ln_by_hand(x, r.ln_in)), r.ln_out)
    if placement == "post":
        return ln_by_hand(x + dt * f(x), r.ln_out)
    if placement == "output":
        return x + dt * ln_by_hand(f(x), r.ln_out)
    if placement == "deepnorm":
        return ln_by_hand((2 * n_layer) ** 0.25 * x + dt * f(x), r.ln_out)
    return x + dt * f(x)


def placements_by_hand(placement, n_layer, fraction=0.25):
    """mix: Post-LN in the first ceil(fraction * L) blocks, Pre-LN after."""
    if placement != "mix":
        return [placement] * n_layer
    n_post = math.ceil(fraction * n_layer)
    return ["post"] * n_post + ["pre"] * (n_layer - n_post)


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("dt", [1.0, 0.3])
@pytest.mark.parametrize("norm", NORMS)
def test_block_equals_its_equation(placement, dt, norm):
    model = make(placement, dt, n_layer=4, norm=norm)
    x = torch.randn(3, 8, 16, dtype=torch.float64)
    for block, p in zip(model.blocks, placements_by_hand(placement, 4)):
        expected = step_by_hand(p, dt, x, block.attn, lambda u: attention_by_hand(u, block.attn.f), 4)
        expected = step_by_hand(p, dt, expected, block.mlp, lambda u: mlp_by_hand(u, block.mlp.f), 4)
        torch.testing.assert_close(block(x), expected, rtol=1e-12, atol=1e-12)
        x = expected


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("norm", NORMS)
def test_whole_model_equals_its_equation(placement, norm):
    model = make(placement, 0.5, n_layer=3, norm=norm, mix_fraction=0.5)
    idx = torch.randint(0, 11, (2, 8))
    x = model.wte.weight[idx] + model.wpe.weight[:8]
    for block, p in zip(model.blocks, placements_by_hand(placement, 3, 0.5)):
        x = step_by_hand(p, 0.5, x, block.attn, lambda u: attention_by_hand(u, block.attn.f), 3)
        x = step_by_hand(p, 0.5, x, block.mlp, lambda u: mlp_by_hand(u, block.mlp.f), 3)
    if placement in ("pre", "peri", "output", "mix"):  # the stream leaves the last block unnormalised
        x = ln_by_hand(x, model.ln_f)
    else:
        assert model.ln_f is None
    torch.testing.assert_close(model(idx)[0], x @ model.wte.weight.T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_dt_scales_the_branch_and_nothing_else(placement):
    a, b = make(placement, 1.0), make(placement, 0.25)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 8, 16, dtype=torch.float64)
    for ra, rb in zip(a.sublayers(), b.sublayers()):
        torch.testing.assert_close(ra.branch(x), rb.branch(x))  # dt is not inside the branch
        if rb.placement in ("post", "deepnorm"):  # mix: its first block is Post-LN
            torch.testing.assert_close(rb(x), rb.ln_out(ra.alpha * x + 0.25 * ra.branch(x)))
        else:
            torch.testing.assert_close(rb(x) - x, 0.25 * (ra(x) - x))


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_layer_norms_where_the_placement_puts_them(placement):
    r = make(placement).blocks[0].attn  # mix: the first block is Post-LN
    assert (r.ln_in is not None) == (placement in ("pre", "peri"))
    assert (r.ln_out is not None) == (placement in ("peri", "post", "output", "mix", "deepnorm"))


def test_fused_attention_equals_explicit():
    torch.manual_seed(0)
    cfg = dict(placement="pre", n_layer=2, n_head=4, d_model=32, block_size=16, vocab_size=13)
    fused, explicit = GPT(ModelConfig(**cfg)), GPT(ModelConfig(**cfg, fused_attention=False))
    explicit.load_state_dict(fused.state_dict())
    idx = torch.randint(0, 13, (2, 16))
    torch.testing.assert_close(fused(idx)[0], explicit(idx)[0], rtol=1e-5, atol=1e-5)


def test_weight_tying_and_gpt2_init():
    model = make("pre", n_layer=6, d=32)
    assert model.lm_head.weight is model.wte.weight
    m = GPT(ModelConfig(n_layer=12, d_model=64, n_head=4, block_size=8, vocab_size=50))
    proj = torch.cat([b.mlp.f.proj.weight.flatten() for b in m.blocks])
    assert abs(proj.std().item() - 0.02 / math.sqrt(24)) < 0.001
    assert abs(m.blocks[0].mlp.f.fc.weight.std().item() - 0.02) < 0.002


def test_no_bias_option():
    model = make("peri", bias=False)
    assert all(not n.endswith("bias") for n, _ in model.named_parameters())
    model(torch.randint(0, 11, (1, 8)))


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_48_layer_model_builds_and_trains_one_step(placement):
    cfg = ModelConfig(placement=placement, dt=0.1, n_layer=48, n_head=4, d_model=64,
                      block_size=16, vocab_size=50)
    model = GPT(cfg)
    idx = torch.randint(0, 50, (2, 16))
    hidden = []
    _, loss = model(idx, idx, hidden=hidden)
    loss.backward()
    assert len(hidden) == 97 and torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_sequence_longer_than_context_is_rejected():
    model = make("pre")
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 9, dtype=torch.long))


@pytest.mark.parametrize("init", ["gain", "proj", "none"])
def test_peri_output_norm_init_and_the_eps_regime(init):
    """GPT-2's 1/sqrt(2L) on a projection that an output LN normalises only pushes the LN's input
    under ln_eps (docs/bounds.md, "The Peri-LN eps regime"); 'gain' moves it to the LN's gain."""
    torch.manual_seed(0)
    cfg = ModelConfig(placement="peri", n_layer=24, d_model=32, n_head=4, block_size=32, vocab_size=65,
                      normalised_branch_init=init)
    model = GPT(cfg)
    scale = 1 / math.sqrt(2 * cfg.n_layer)
    r = model.sublayers()[1]  # an MLP sub-layer
    assert r.ln_out.weight.detach().mean().item() == pytest.approx(scale if init == "gain" else 1.0)
    proj_std = r.f.proj.weight.detach().std().item()
    assert proj_std == pytest.approx(0.02 * (scale if init == "proj" else 1.0), rel=0.1)
    x = model.embed(torch.randint(0, 65, (4, 32)))
    with torch.no_grad():
        branch_in = r.f(r.ln_in(x))
    token_var = branch_in.var(dim=-1, unbiased=False).mean().item()
    assert (token_var < cfg.ln_eps) == (init == "proj")


def test_every_placement_has_its_colour_and_the_schema_declares_none():
    from lnstab.figures import PLACEMENT_COLORS

    from lnstab.config import MEASURED_ONLY_PLACEMENTS

    placements = set(PLACEMENTS) | set(MEASURED_ONLY_PLACEMENTS)  # lnstab inspect draws these too
    assert set(PLACEMENT_COLORS) == placements and len(set(PLACEMENT_COLORS.values())) == len(placements)
    schema = (Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml").read_text()
    assert "peri" not in schema  # placements are declared once, in lnstab.config.PLACEMENTS
