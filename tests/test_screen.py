"""lnstab screen: the verdicts' thresholds, the weight-dependence measurement on each kind of
placement, and a block of one's own through the command line."""
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from lnstab.config import load_config
from lnstab.model import GPT
from lnstab.screen import (COLLAPSE_RATIO, VANISHING_ADJOINT, WEIGHT_DEPENDENCE, classify, weight_dependence)

from conftest import ROOT


@pytest.mark.parametrize("numbers, expected", [
    ((0.5, 1.0, 1.0), ("bounded independently of the weights", "uniform")),
    ((0.5, 2.5, 1.0), ("depends on the weights", "uniform")),
    ((COLLAPSE_RATIO / 2, 50.0, 1e-5), ("collapses", "vanishing")),
    ((0.5, 1.0, 2 / VANISHING_ADJOINT), ("bounded independently of the weights", "exploding")),
    ((0.5, WEIGHT_DEPENDENCE, VANISHING_ADJOINT), ("bounded independently of the weights", "uniform")),
])
def test_verdicts_follow_their_thresholds(numbers, expected):
    assert classify(*numbers) == expected


@pytest.mark.parametrize("placement, depends", [
    ("pre", True), ("none", True), ("mix", True),  # the step adds F's output unnormalised
    ("peri", False), ("output", False), ("post", False), ("deepnorm", False)])
@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_weight_dependence_separates_normalised_steps(placement, depends, norm):
    """Embeddings of unit scale (out of the eps regime), so a norm on the branch or the sum
    holds the growth whatever F's weights; without one, scaling F scales the stream."""
    cfg = load_config(None, [f"model.placement={placement}", f"model.norm={norm}", "model.n_layer=4",
                             "model.vocab_size=50", "model.mix_fraction=0.25"]).model
    torch.manual_seed(0)
    model = GPT(cfg)
    with torch.no_grad():
        model.wte.weight.normal_(0, 1.0)
        for name, p in model.named_parameters():
            if ".f." in name and p.ndim == 2:
                p.normal_(0, 1 / p.shape[1] ** 0.5)
    ratio = weight_dependence(model, torch.randint(50, (4, 16)))
    assert (ratio > WEIGHT_DEPENDENCE) == depends, ratio


def test_screen_a_block_of_ones_own_from_the_command_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests" / "blocks")])}
    small = ["--set", "model.n_layer=2", "--set", "model.d_model=16", "--set", "model.n_head=2",
             "--set", "model.block_size=16", "--set", "train.batch_size=4", "--set", "train.warmup_steps=2",
             "--set", "probe.jacobian_iters=3", "--set", "train.eval_interval=10"]
    res = subprocess.run([sys.executable, "-m", "lnstab", "screen", "--block", "gated:TanhResidual", "--steps", "10",
                          "--out", str(tmp_path), *small], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    verdicts = pd.read_csv(tmp_path / "screen_verdicts.csv")
    assert set(verdicts["architecture"]) == {"gated:TanhResidual", "pre", "peri", "post"}
    assert len(verdicts) == 8 and (tmp_path / "screen.png").exists()
    mine = verdicts[verdicts["architecture"] == "gated:TanhResidual"]
    assert (mine["role"] == "candidate").all() and "gated:TanhResidual" in res.stdout
    # |tanh| <= 1: the growth does not follow F's weights
    assert (mine["weight_dependence"] < WEIGHT_DEPENDENCE).all()
    sub = pd.read_csv(tmp_path / "screen_sublayers.csv")
    assert sub[sub["architecture"] == "gated:TanhResidual"]["slope_bound"].isna().all()  # no theorem for it
    bad = subprocess.run([sys.executable, "-m", "lnstab", "screen", "--block", "gated:Nope", "--out", str(tmp_path)],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "gated:Nope" in bad.stderr
