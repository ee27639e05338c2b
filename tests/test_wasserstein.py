"""Wasserstein sensitivity: the distances are right where they are known in closed form, the
flow is the model's residual stream, and an identity flow has ratio 1."""
import math

import numpy as np
import pytest
import torch

from lnstab.config import ModelConfig
from lnstab.model import GPT
from lnstab.wasserstein import NOISE_SCALES, flow, flow_gains, sensitivity_rows, sliced_w2, w2


def test_exact_w2_of_a_translated_cloud_is_the_translation():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 8))
    shift = rng.normal(size=8)
    value, se, method = w2(a, a + shift)
    assert method == "exact" and se == 0.0
    assert value == pytest.approx(np.linalg.norm(shift), rel=1e-9)
    assert w2(a, a)[0] == pytest.approx(0.0, abs=1e-9)


def test_sliced_w2_of_a_translation_within_its_stated_error():
    """Along a uniform direction theta, W_2^2 = (theta . m)^2, whose mean is ||m||^2 / d."""
    rng = np.random.default_rng(1)
    d = 16
    a = rng.normal(size=(500, d))
    shift = rng.normal(size=d)
    value, se, method = sliced_w2(a, a + shift, projections=400)
    assert method == "sliced" and se > 0
    assert abs(value - np.linalg.norm(shift) / math.sqrt(d)) < 4 * se


def test_flow_is_the_residual_stream():
    torch.manual_seed(0)
    model = GPT(ModelConfig(placement="peri", n_layer=3, d_model=16, n_head=2, block_size=8, vocab_size=13))
    idx = torch.randint(13, (2, 8))
    hidden = []
    with torch.no_grad():
        model(idx, hidden=hidden)
    torch.testing.assert_close(flow(model, model.embed(idx)), hidden[-1])


def test_identity_flow_has_ratio_one():
    """No norm, every branch's output projection zero: the flow is the identity."""
    torch.manual_seed(0)
    model = GPT(ModelConfig(placement="none", n_layer=2, d_model=16, n_head=2, block_size=8, vocab_size=13))
    with torch.no_grad():
        for r in model.sublayers():
            r.f.proj.weight.zero_()
            r.f.proj.bias.zero_()
    rows = sensitivity_rows(model, torch.randint(13, (4, 8)), torch.randint(13, (4, 8)))
    assert [r["perturbation"] for r in rows] == [f"noise {s:g}" for s in NOISE_SCALES] + ["other slice"]
    for r in rows:
        assert r["ratio"] == pytest.approx(1.0, rel=1e-9) and r["method"] == "exact"


def test_flow_gains_are_the_exact_jacobian_norms():
    """rms and worst-direction gains of the flow equal those of its Jacobian formed by autograd in
    float64, and the identity flow has both equal to 1."""
    torch.manual_seed(0)
    model = GPT(ModelConfig(placement="pre", n_layer=2, d_model=8, n_head=2, block_size=4, vocab_size=13))
    idx = torch.randint(13, (2, 4))
    g = flow_gains(model, idx)
    m64 = model.double()
    worst, rms = 0.0, 0.0
    def stream(z):  # the flow with autograd on (``flow`` itself runs under no_grad)
        z = z.unsqueeze(0)
        for r in m64.sublayers():
            z = r(z)
        return z[0]

    for b in range(2):
        x0 = m64.embed(idx[b:b + 1])[0].detach()
        J = torch.autograd.functional.jacobian(stream, x0).reshape(32, 32)
        worst = max(worst, torch.linalg.matrix_norm(J, 2).item())
        rms = max(rms, J.norm().item() / math.sqrt(32))
    assert g["worst_gain"] == pytest.approx(worst, rel=1e-9) and g["rms_gain"] == pytest.approx(rms, rel=1e-9)
    assert g["rms_gain"] < g["worst_gain"]
    with torch.no_grad():
        for r in model.sublayers():
            r.f.proj.weight.zero_()
            r.f.proj.bias.zero_()
    assert flow_gains(model.float(), idx) == pytest.approx({"rms_gain": 1.0, "worst_gain": 1.0})
    assert math.isnan(flow_gains(model, idx, max_dim=16)["worst_gain"])  # too large: not computed


def test_small_noise_ratio_is_close_to_the_random_direction_gain():
    """For noise small enough that the flow is linear around the data, the W_2 ratio of the noise
    clouds is near ||J||_F / sqrt(T d) (within a factor 2: W_2 pairs tokens, not sequences)."""
    torch.manual_seed(1)
    model = GPT(ModelConfig(placement="peri", n_layer=2, d_model=8, n_head=2, block_size=8, vocab_size=13))
    idx = torch.randint(13, (8, 8))
    rows = sensitivity_rows(model, idx, torch.randint(13, (8, 8)))
    g = flow_gains(model, idx, sequences=8)
    small = rows[0]["ratio"]
    assert 0.5 * g["rms_gain"] < small < 2 * g["worst_gain"]
