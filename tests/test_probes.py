"""Probe values equal a direct computation, and probing never changes training."""
import numpy as np
import pandas as pd
import pytest
import torch

from lnstab.config import ModelConfig
from lnstab.model import GPT
from lnstab.probes import moments, operator_norms, probe, spectral_norms
from lnstab.train import TIMING_COLUMNS, train

from conftest import tiny_config


def test_moments_equal_numpy():
    x = torch.randn(3, 5, 7) * torch.linspace(0.1, 3, 7) + 2.0
    X = x.reshape(-1, 7).double().numpy()
    m = moments(x)
    assert m["mean_abs"] == pytest.approx(np.abs(X).mean(), rel=1e-12)
    assert m["var_entry"] == pytest.approx(np.mean([row.var() for row in X]), rel=1e-12)
    assert m["var_data"] == pytest.approx(np.mean([col.var() for col in X.T]), rel=1e-12)
    assert m["mean_norm"] == pytest.approx(np.linalg.norm(X, axis=1).mean(), rel=1e-12)
    assert m["max_abs"] == pytest.approx(np.abs(X).max(), rel=1e-12)


@pytest.mark.parametrize("placement", ["pre", "peri", "post", "none"])
def test_probe_rows_equal_direct_computation(placement):
    torch.manual_seed(1)
    model = GPT(ModelConfig(placement=placement, n_layer=3, n_head=2, d_model=16, block_size=8, vocab_size=20))
    idx, tgt = torch.randint(0, 20, (4, 8)), torch.randint(0, 20, (4, 8))
    res = probe(model, idx, tgt, jacobian_iters=0)
    rows = pd.DataFrame(res["rows"])
    val = lambda point, k, q: rows.query("point == @point and sublayer == @k and quantity == @q")["value"].item()

    # direct: keep every x^(k) with retain_grad, backprop the loss, read .grad
    hidden = []
    _, loss = model(idx, tgt, hidden=hidden)
    for h in hidden:
        h.retain_grad()
    loss.backward()
    assert len(hidden) == 7
    for k, h in enumerate(hidden):
        point = "embed" if k == 0 else ("attn" if k % 2 else "mlp")
        X = h.detach().reshape(-1, 16).double()
        assert val(point, k, "mean_abs") == pytest.approx(X.abs().mean().item(), rel=1e-10)
        assert val(point, k, "var_data") == pytest.approx(X.var(0, unbiased=False).mean().item(), rel=1e-10)
        assert val(point, k, "adjoint_norm") == pytest.approx(h.grad.double().norm().item(), rel=1e-6)
    for name, p in model.named_parameters():
        if name.startswith("blocks.1.mlp.f.fc.weight"):
            got = rows.query("point == 'mlp.f.fc.weight' and layer == 1 and quantity == 'grad_norm'")["value"].item()
            assert got == pytest.approx(p.grad.norm().item(), rel=1e-6)
            sn = rows.query("point == 'mlp.f.fc.weight' and layer == 1 and quantity == 'spectral_norm'")["value"].item()
            assert sn == pytest.approx(torch.linalg.svdvals(p.detach()).max().item(), rel=1e-6)
    block1 = np.sqrt(sum(p.grad.norm().item() ** 2 for n, p in model.named_parameters() if n.startswith("blocks.1.")))
    got = rows.query("point == 'block' and layer == 1 and quantity == 'grad_norm'")["value"].item()
    assert got == pytest.approx(block1, rel=1e-6)


def test_probe_leaves_grads_and_rng_alone():
    torch.manual_seed(0)
    model = GPT(ModelConfig(placement="peri", n_layer=2, n_head=2, d_model=16, block_size=8, vocab_size=20))
    idx = torch.randint(0, 20, (2, 8))
    state = torch.get_rng_state()
    probe(model, idx, idx, jacobian_iters=3)
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("placement", ["pre", "peri", "post", "none", "output", "mix", "deepnorm"])
def test_a_backward_by_sub_layer_is_the_backward_pass_bit_for_bit(placement):
    """The recomputing pass (inspect's, for GPT-2 XL in 24 GiB) gives every row of the probe exactly,
    gradient norms of the tied embedding and adjoints included, and leaves no gradient behind."""
    torch.manual_seed(0)
    model = GPT(ModelConfig(placement=placement, norm="rmsnorm" if placement == "output" else "layernorm", dt=0.5,
                            n_layer=3, n_head=2, d_model=16, block_size=8, vocab_size=11))
    idx, y = torch.randint(0, 11, (3, 8)), torch.randint(0, 11, (3, 8))
    full, lean = probe(model, idx, y, 4), probe(model, idx, y, 4, recompute=True)
    key = lambda r: (r["point"], r["layer"], r["sublayer"], r["quantity"])  # noqa: E731
    assert {key(r): r["value"] for r in lean["rows"]} == {key(r): r["value"] for r in full["rows"]}
    assert lean["loss"] == full["loss"] and all(p.grad is None for p in model.parameters())


def test_spectral_norms_and_moments_in_chunks_are_the_same(monkeypatch):
    """Big checkpoints stack a few tensors at a time (probes.STACK_BYTES): the values do not move."""
    import lnstab.probes as probes

    torch.manual_seed(4)
    mats, xs = [torch.randn(24, 40) for _ in range(5)], [torch.randn(6, 40) for _ in range(5)]
    whole, m_whole = spectral_norms(mats), probes.stacked_moments(xs)
    monkeypatch.setattr(probes, "STACK_BYTES", 2 * 8 * 24 * 40)  # two at a time
    assert spectral_norms(mats) == pytest.approx(whole, rel=1e-14)
    assert probes.stacked_moments(xs) == [pytest.approx(m, rel=1e-14) for m in m_whole]


def exact_block_norms(fn, x):
    """Norm of the full Jacobian of fn at x (all sequences together), by SVD."""
    J = torch.autograd.functional.jacobian(fn, x).reshape(x.numel(), x.numel())
    return torch.linalg.svdvals(J).max().item()


def test_lanczos_reaches_the_exact_norm_from_below():
    torch.manual_seed(0)
    A, B = torch.randn(12, 12, dtype=torch.float64), torch.randn(12, 12, dtype=torch.float64) * 3
    fns = [lambda x: torch.tanh(x @ A.T), lambda x: torch.sin(x @ B.T) * x]  # noqa: E731
    xs = [torch.randn(3, 12, dtype=torch.float64), torch.randn(3, 12, dtype=torch.float64)]
    exact = [exact_block_norms(f, x) for f, x in zip(fns, xs)]
    few = operator_norms(fns, xs, iters=4, tol=0.0)
    full = operator_norms(fns, xs, iters=100, tol=0.0)  # capped at 12 = a sequence's entries
    for e, lo, hi in zip(exact, few, full):
        assert lo <= hi * (1 + 1e-12) and hi <= e * (1 + 1e-9)
        assert hi == pytest.approx(e, rel=1e-8)


def test_lanczos_stops_at_its_tolerance_and_beats_power_iteration():
    """A 256-entry block whose singular values fill [0.5, 1] evenly (no gap to exploit): after 16
    products Lanczos is within 0.1% of the norm, power iteration with the same 16 is over 1% low."""
    torch.manual_seed(1)
    U, _ = torch.linalg.qr(torch.randn(256, 256, dtype=torch.float64))
    s = torch.linspace(1.0, 0.5, 256, dtype=torch.float64)
    A = U @ torch.diag(s) @ U.T
    fn = lambda x: x @ A  # noqa: E731
    x = torch.zeros(1, 256, dtype=torch.float64)
    est = operator_norms([fn], [x], iters=16, tol=0.0)[0]
    v = torch.randn(256, dtype=torch.float64)
    for _ in range(16):
        v = A @ (A @ v)
        v = v / v.norm()
    power = (A @ v).norm().item()
    assert power < est <= 1.0 + 1e-12
    assert est == pytest.approx(1.0, rel=1e-3) and power < 0.99
    loose = operator_norms([fn], [x], iters=200, tol=1e-2)[0]
    assert 0.99 <= loose <= 1.0 + 1e-12


def test_spectral_norms_equal_svd_on_adversarial_matrices():
    torch.manual_seed(2)
    u, v = torch.randn(64, 1), torch.randn(1, 256)
    mats = [torch.randn(64, 256), torch.randn(256, 64) * 1e3, u @ v,  # wide, tall, rank one
            torch.diag(torch.logspace(-6, 2, 32)), torch.zeros(5, 7), torch.randn(64, 256)]
    got = spectral_norms(mats)
    want = [torch.linalg.svdvals(m.double()).max().item() for m in mats]
    assert got == pytest.approx(want, rel=1e-12, abs=1e-300)


def _model_columns(df):
    return df.drop(columns=[c for c in TIMING_COLUMNS if c in df.columns])


def test_probes_do_not_change_training(tmp_path):
    on = train(tiny_config("probe.enabled=true"), tmp_path / "on", verbose=False)
    off = train(tiny_config("probe.enabled=false"), tmp_path / "off", verbose=False)
    a = _model_columns(pd.read_csv(tmp_path / "on" / "metrics.csv"))
    b = _model_columns(pd.read_csv(tmp_path / "off" / "metrics.csv"))
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert on["final_val_loss"] == off["final_val_loss"]
    assert len(pd.read_csv(tmp_path / "on" / "probes.csv")) > 0
    assert len(pd.read_csv(tmp_path / "off" / "probes.csv")) == 0
