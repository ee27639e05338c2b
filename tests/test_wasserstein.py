"""Wasserstein sensitivity: the distances are right where they are known in closed form, the
flow is the model's residual stream, and an identity flow has ratio 1."""
import math

import numpy as np
import pytest
import torch

from lnstab.config import ModelConfig
from lnstab.model import GPT
from lnstab.wasserstein import NOISE_SCALES, flow, lipschitz_estimate, sensitivity_rows, sliced_w2, w2


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


def test_lipschitz_estimate_is_the_backward_product():
    assert lipschitz_estimate(["pre", "pre"], 0.5, [2.0, 4.0], []) == pytest.approx(2.0 * 3.0)
    assert lipschitz_estimate(["post", "pre"], 1.0, [9.0, 1.0], [3.0]) == pytest.approx(3.0 * 2.0)
