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
from lnstab.screen import (ADJOINT_STEP_WINDOW, COLLAPSE_RATIO, EXPONENTIAL_FACTOR, classify, depth_fit, pick_lr,
                           load_block, screen_depths, screen_one, screen_config, verdict_rows, weight_homogeneity)

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tests" / "blocks"))


@pytest.mark.parametrize("numbers, expected", [
    ((True, 0.5, 1.0, 0.5, 1.0), ("at most linear", "uniform")),
    ((True, 0.5, 1.1, 1.5, 1.0), ("grows faster than linearly", "uniform")),
    ((True, 0.5, EXPONENTIAL_FACTOR, 3.0, 1.0), ("grows exponentially", "uniform")),
    ((True, COLLAPSE_RATIO / 2, 2.0, 5.0, 0.2), ("collapses", "vanishing")),
    ((True, 0.5, 1.0, 0.5, 1.0, COLLAPSE_RATIO / 2), ("collapses within sequences", "uniform")),
    ((True, COLLAPSE_RATIO / 2, 1.0, 0.5, 1.0, COLLAPSE_RATIO / 2), ("collapses", "uniform")),  # global first
    ((True, 0.5, 1.0, 0.5, 1.0, 2 * COLLAPSE_RATIO), ("at most linear", "uniform")),
    ((True, 0.5, 1.0, 0.5, 1.01 * ADJOINT_STEP_WINDOW), ("at most linear", "exploding")),
    ((True, 0.5, 1.0, 1.0, ADJOINT_STEP_WINDOW), ("at most linear", "uniform")),
    ((False, float("nan"), float("nan"), float("nan"), float("nan")), ("diverges", "diverges")),
])
def test_verdicts_follow_their_thresholds(numbers, expected):
    assert classify(*numbers) == expected


def test_depth_fit_separates_polynomial_from_exponential():
    for depths in ([2, 4, 8], [4, 8, 16]):
        linear = depth_fit(depths, [1 + 0.5 * L for L in depths])
        assert linear["depth_exponent"] <= 1 and linear["step_factor"] < EXPONENTIAL_FACTOR
        # second moments of Peri-LN may grow quadratically: never "exponential" at these depths
        quadratic = depth_fit(depths, [L ** 2 for L in depths])
        assert quadratic["depth_exponent"] == pytest.approx(2) and quadratic["step_factor"] < EXPONENTIAL_FACTOR
        doubling = depth_fit(depths, [2.0 ** (2 * L) for L in depths])
        assert doubling["step_factor"] == pytest.approx(2.0)
    assert screen_depths(8) == [2, 4, 8] and screen_depths(16) == [4, 8, 16]
    with pytest.raises(ValueError, match="n_layer"):
        screen_depths(3)


@pytest.mark.parametrize("placement, homogeneous", [
    ("pre", True), ("none", True), ("mix", True),  # the step adds F's output unnormalised
    ("peri", False), ("output", False), ("post", False), ("deepnorm", False)])
@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_weight_homogeneity_separates_normalised_steps(placement, homogeneous, norm):
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
    ratio = weight_homogeneity(model, torch.randint(50, (4, 16)))
    assert (ratio > 2.0) == homogeneous, ratio


TINY_SCREEN = ["model.d_model=16", "model.n_head=2", "model.block_size=16", "train.batch_size=4",
               "train.warmup_steps=2", "train.steps=6", "train.eval_interval=3", "probe.jacobian_iters=3",
               "probe.batch_size=2"]


def screened(tmp_path, n_layer, block=None, placement="pre", lrs=(1e-3, 3e-3)):
    cfg = screen_config(None, TINY_SCREEN + [f"model.n_layer={n_layer}", f"model.placement={placement}"])
    residual = load_block(block) if block else None
    _, numbers, trials = screen_one(block or placement, cfg, tmp_path / f"{block}-{placement}-{n_layer}", residual,
                                    verbose=False, lrs=lrs)
    assert len(trials) == 3 * len(lrs)  # every depth at every learning rate, all reported
    return {v["state"]: v for v in verdict_rows(block or placement, numbers, trials)}


@pytest.mark.parametrize("n_layer", [8, 16])
@pytest.mark.parametrize("block, state, forward, backward", [
    ("gated:TanhResidual", "init", "at most linear", "uniform"),  # |increment| <= dt sqrt(d)
    ("built:Doubling", "init", "grows exponentially", "exploding"),  # (1 + dt) per sub-layer
    ("built:Collapsing", "init", "collapses", "vanishing"),
    ("built:SequenceCollapsing", "init", "collapses within sequences", None),
    ("built:Overflowing", "trained", "diverges", "diverges"),
])
def test_blocks_get_the_verdict_they_were_built_for_at_every_depth(tmp_path, n_layer, block, state, forward,
                                                                    backward):
    v = screened(tmp_path, n_layer, block, lrs=(1e-3, 3e-3) if state == "trained" else (1e-3,))
    assert v[state]["forward"] == forward, v[state]
    if backward:
        assert v[state]["backward"] == backward, v[state]
    if block == "built:SequenceCollapsing":  # the across-sequence variance is not what collapsed
        assert v["init"]["data_over_entry_var"] > 1e-2 and v["init"]["within_over_entry_var"] < 1e-12, v["init"]
    if block == "built:Doubling":
        # raw top mean|x| (the claims' statistic): the two depths' models draw their own embeddings,
        # whose mean|x^(0)| differ by a few tenths of a percent
        assert v["init"]["step_factor"] == pytest.approx(2.0, rel=1e-2)
        assert v["init"]["weight_homogeneity"] == pytest.approx(1.0)  # exponential, yet "weight-free"


@pytest.mark.parametrize("n_layer", [8, 16])
def test_a_provably_bounded_block_is_at_most_linear_at_each_learning_rate(tmp_path, n_layer):
    """x + dt tanh(F(x)): every increment is at most dt sqrt(d), so no training recipe can make it
    grow faster than linearly: the fit at each learning rate apart says so (per_lr)."""
    v = screened(tmp_path, n_layer, "gated:TanhResidual", lrs=(1e-3, 1e-2))["trained"]
    parts = v["per_lr"].split("; lr ")
    assert len(parts) == 2 and all(": at most linear" in p for p in parts), v["per_lr"]


def test_the_verdict_comes_from_a_rate_that_learns_at_every_depth():
    n = lambda L, loss: {"n_layer": L, "final_val_loss": loss}  # noqa: E731
    per_lr = {1e-3: [n(2, 2.4), n(4, 2.4), n(8, 2.4)],      # learns everywhere
              1e-2: [n(2, 2.0), n(4, 2.0), n(8, 3.5)],      # lower mean loss, fails at 8 blocks
              3e-2: [n(2, 2.0), n(4, float("nan")), n(8, 2.0)]}
    assert pick_lr(per_lr, bigram=3.0) == (1e-3, "learns at every depth")
    lr, why = pick_lr(per_lr, bigram=1.0)  # nothing learns: the lowest mean loss, said so
    assert lr == 1e-3 and why.startswith("no learning rate learns")


@pytest.mark.parametrize("n_layer", [8, 16])
@pytest.mark.parametrize("placement", ["peri", "output"])
def test_normalised_branches_grow_at_most_linearly_at_init(tmp_path, n_layer, placement):
    v = screened(tmp_path, n_layer, placement=placement, lrs=(1e-3,))
    assert (v["init"]["forward"], v["init"]["backward"]) == ("at most linear", "uniform"), v["init"]


def test_screen_a_block_of_ones_own_from_the_command_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests" / "blocks")])}
    small = ["--set", "model.n_layer=4", "--set", "model.d_model=16", "--set", "model.n_head=2",
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
    assert (mine["weight_homogeneity"] < 2.0).all()
    trained = mine[mine["state"] == "trained"].iloc[0]
    assert trained["trials"].count("lr") == 9 and trained["depths"] == "1,2,4"  # 3 depths x 3 learning rates
    assert trained["per_lr"].count("lr ") == 3 and trained["best_lr"] in (1e-3, 3e-3, 1e-2)
    sub = pd.read_csv(tmp_path / "screen_sublayers.csv")
    assert sub[sub["architecture"] == "gated:TanhResidual"]["slope_bound"].isna().all()  # no theorem for it
    bad = subprocess.run([sys.executable, "-m", "lnstab", "screen", "--block", "gated:Nope", "--out", str(tmp_path)],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "gated:Nope" in bad.stderr


def test_screen_rejects_zero_steps_and_too_shallow_a_model(tmp_path):
    for args, key in ((["--steps", "0"], "train.steps"), (["--set", "model.n_layer=2"], "model.n_layer")):
        res = subprocess.run([sys.executable, "-m", "lnstab", "screen", *args, "--out", str(tmp_path / "s")],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and key in res.stderr, res.stderr[-2000:]
        assert not (tmp_path / "s" / "runs").exists()  # nothing trained


BAD_BLOCKS = {
    "raises_at_import": "raise RuntimeError('configuration missing')\n",
    "syntax_error": "class Block(:\n",
    "no_dt": ("import torch.nn as nn\n"
              "class Block(nn.Module):\n"
              "    def __init__(self, f, cfg, placement):\n"
              "        super().__init__()\n"
              "        self.f = f\n"
              "    def branch(self, x):\n"
              "        return self.f(x)\n"
              "    def forward(self, x):\n"
              "        return x + self.branch(x)\n"),
}


@pytest.mark.parametrize("spec, needle", [
    ("raises_at_import:Block", "RuntimeError: configuration missing"),
    ("syntax_error:Block", "SyntaxError"),
    (".relative:Block", "absolute module name"),
    ("no_dt:Block", "no dt, placement"),
    ("os:sep", "is not a class"),
])
def test_a_users_block_that_cannot_be_used_is_one_line(tmp_path, spec, needle):
    for name, text in BAD_BLOCKS.items():
        (tmp_path / f"{name}.py").write_text(text)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(tmp_path)])}
    res = subprocess.run([sys.executable, "-m", "lnstab", "screen", "--block", spec, "--steps", "40",
                          "--out", str(tmp_path / "s")], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2 and needle in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "s" / "runs").exists()


@pytest.mark.parametrize("how", ["set", "yaml", "list"])
def test_a_learning_rate_or_a_list_as_the_screens_config_is_refused(tmp_path, how):
    """The screen trains at each of its learning rates: a single train.lr would be silently unused
    (lr 1e6 and 100 gave identical trials), so it is refused, pointing at --lrs; a YAML list is not
    a config."""
    config = tmp_path / "screen.yaml"
    config.write_text({"set": "model: {n_layer: 4}\n", "yaml": "train: {lr: 100}\n", "list": "- model\n"}[how])
    args = ["--set", "train.lr=1e6"] if how == "set" else []
    res = subprocess.run([sys.executable, "-m", "lnstab", "screen", str(config), *args, "--out", str(tmp_path / "s")],
                         capture_output=True, text=True, timeout=120)
    needle = "a mapping of sections" if how == "list" else "train.lr: the screen trains at each of its learning rates"
    assert res.returncode == 2 and needle in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]
    if how != "list":
        assert "--lrs" in res.stderr


def test_screen_lrs_are_the_trials_learning_rates(tmp_path):
    small = ["--set", "model.n_layer=4", "--set", "model.d_model=16", "--set", "model.n_head=2",
             "--set", "model.block_size=16", "--set", "train.batch_size=4", "--set", "train.warmup_steps=2",
             "--set", "probe.jacobian_iters=2", "--set", "train.eval_interval=5"]
    res = subprocess.run([sys.executable, "-m", "lnstab", "screen", "--steps", "5", "--lrs", "0.002,0.02",
                          "--out", str(tmp_path), *small], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    trained = pd.read_csv(tmp_path / "screen_verdicts.csv").query("state == 'trained'")
    assert all(t.count("lr 0.002") == 3 and t.count("lr 0.02") == 3 and t.count("lr ") == 6 for t in trained["trials"])
    bad = subprocess.run([sys.executable, "-m", "lnstab", "screen", "--lrs", "fast", "--out", str(tmp_path / "b")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--lrs 'fast'" in bad.stderr
