"""Training groups (lnstab.groups): the stacked model is each run's own model, a run's results do not
depend on the runs that share its group, and a group stopped at any moment resumes bit-identically."""
import json
import random
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from lnstab.config import PLACEMENTS
from lnstab.groups import StackedAdamW, clip_per_run, group_key, plan_groups, train_group
from lnstab.model import GPT
from lnstab.train import PREEMPTED_EXIT, make_optimizer, train

from conftest import ROOT, tiny_config
from test_train import _ckpt_step, assert_same_run

# LayerNorm's gains and biases: the single run's fused kernel sums their gradient over tokens in
# its own order, the stacked form (normalise, then one multiply-add per run) in another. Measured
# on AVX512 at most 6.5e-7 of the largest element; the bound below leaves 15x for other CPUs. Every
# other gradient, and every loss, is bit-identical.
LAYERNORM_RTOL = 1e-5


def stacked_and_single(placement, norm, dts=(1.0, 0.1, 0.5)):
    models = []
    for seed, dt in enumerate(dts):
        cfg = tiny_config(f"model.placement={placement}", f"model.norm={norm}", f"model.dt={dt}",
                          "model.vocab_size=65")
        torch.manual_seed(seed)
        models.append(GPT(cfg.model))
    return models


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_stacked_gradients_are_each_runs_own(placement, norm):
    models = stacked_and_single(placement, norm)
    stacked = GPT.stack(models)
    gen = torch.Generator().manual_seed(5)
    x, y = torch.randint(0, 65, (3, 4, 32), generator=gen), torch.randint(0, 65, (3, 4, 32), generator=gen)
    _, losses = stacked(x, y)
    losses.sum().backward()
    for r, model in enumerate(models):
        _, loss = model(x[r], y[r])
        loss.backward()
        assert torch.equal(loss, losses[r].detach())
        for (name, p), q in zip(model.named_parameters(), stacked.parameters()):
            if norm == "layernorm" and ".ln_" in f".{name}":
                scale = p.grad.abs().max()
                assert (p.grad - q.grad[r]).abs().max() <= LAYERNORM_RTOL * scale, name
            else:
                assert torch.equal(p.grad, q.grad[r]), name


def test_each_run_model_is_a_view_of_the_stacked_weights():
    models = stacked_and_single("pre", "layernorm")
    stacked = GPT.stack(models)
    with torch.no_grad():
        stacked.blocks[0].attn.f.qkv.weight[1].add_(1.0)
    assert torch.equal(models[1].blocks[0].attn.f.qkv.weight, stacked.blocks[0].attn.f.qkv.weight[1])
    assert models[1].lm_head.weight is models[1].wte.weight and stacked.lm_head.weight is stacked.wte.weight


class _Member:
    """What StackedAdamW and clip_per_run read of a run: its model, optimizer and config."""

    def __init__(self, cfg, seed):
        self.cfg = cfg
        torch.manual_seed(seed)
        self.model = GPT(cfg.model)
        self.optimizer = make_optimizer(self.model, cfg, torch.device("cpu"))


def test_stacked_adamw_and_clipping_are_torchs_run_by_run():
    """Per-run learning rates, weight decays, clipping and the dt folding's eps and lr scales: the
    stacked step equals each run's own clip_grad_norm_ and foreach AdamW, bit for bit."""
    cfgs = [tiny_config("model.vocab_size=65", *extra) for extra in
            ([], ["train.lr=0.003", "train.weight_decay=0.0"], ["model.fold_dt=true", "model.dt=0.1"],
             ["train.grad_clip=0", "train.lr=0.02"], ["train.grad_clip=1e-3"])]
    alone = [_Member(c, seed) for seed, c in enumerate(cfgs)]
    grouped = [_Member(c, seed) for seed, c in enumerate(cfgs)]
    stacked = GPT.stack([m.model for m in grouped])
    opt = StackedAdamW(stacked, grouped)
    gen = torch.Generator().manual_seed(1)
    for step in range(4):
        lrs = [c.train.lr * (step + 1) / 4 for c in cfgs]
        grads = [[torch.randn(p.shape, generator=gen) * (10 if step == 2 else 1) for p in alone[0].model.parameters()]
                 for _ in cfgs]
        for m, gs, lr in zip(alone, grads, lrs):
            for p, g in zip(m.model.parameters(), gs):
                p.grad = g.clone()
            for group in m.optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            if m.cfg.train.grad_clip > 0:
                expected = torch.nn.utils.clip_grad_norm_(m.model.parameters(), m.cfg.train.grad_clip).item()
            else:
                expected = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in m.model.parameters()])).item()
            m.norm = expected
            m.optimizer.step()
        for i, p in enumerate(stacked.parameters()):
            p.grad = torch.stack([gs[i] for gs in grads])
        norms = clip_per_run(list(stacked.parameters()), grouped)
        assert norms == [m.norm for m in alone]
        opt.step(lrs)
        for a, g in zip(alone, grouped):
            for p, q in zip(a.model.parameters(), g.model.parameters()):
                assert torch.equal(p, q)
                sa, sg = a.optimizer.state[p], g.optimizer.state[q]
                assert all(torch.equal(sa[k], sg[k]) for k in ("step", "exp_avg", "exp_avg_sq"))


def assert_same_results(a, b):
    """Every table and summary number of two runs equal (test_train), and their final weights."""
    assert_same_run(a, b)
    wa = torch.load(a / "ckpt.pt", weights_only=False)["model"]
    wb = torch.load(b / "ckpt.pt", weights_only=False)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


GROUP = [("seed=0", "model.placement=peri"),
         ("seed=1", "model.placement=peri", "model.dt=0.1", "train.lr=0.003"),
         ("seed=2", "model.placement=peri", "model.fold_dt=true", "model.dt=0.1", "train.weight_decay=0"),
         # blows up: stops alone, the others go on
         ("seed=3", "model.placement=peri", "train.lr=1e6", "train.grad_clip=0", "train.warmup_steps=0")]


def test_a_runs_results_do_not_depend_on_its_group(tmp_path):
    cfgs = [tiny_config(*g) for g in GROUP]
    train_group([cfgs[0]], [tmp_path / "alone"], verbose=False)
    train_group([cfgs[3]], [tmp_path / "diverges_alone"], verbose=False)
    summaries = train_group(cfgs, [tmp_path / f"m{i}" for i in range(4)], "four", verbose=False)
    assert [s["status"] for s in summaries] == ["completed"] * 3 + ["diverged"]
    assert_same_results(tmp_path / "alone", tmp_path / "m0")
    assert_same_results(tmp_path / "diverges_alone", tmp_path / "m3")
    # (its weights in the group's model stayed those of its final checkpoint)
    # the others trained to the end, each with its own learning rate and step
    assert all(s["steps"] == 30 for s in summaries[:3]) and summaries[3]["steps"] < 30
    lr = pd.read_csv(tmp_path / "m1" / "metrics.csv")["learning_rate"]
    assert lr.max() == pytest.approx(0.003)
    seg = json.loads((tmp_path / "m1" / "provenance.json").read_text())["segments"][-1]
    assert seg["group"] == {"name": "four", "runs": ["m0", "m1", "m2", "m3"]}
    # a member's checkpoint holds its own numbers only, as large as a single run's
    train(cfgs[0], tmp_path / "single", verbose=False)
    size = (tmp_path / "single" / "ckpt.pt").stat().st_size
    assert abs((tmp_path / "m0" / "ckpt.pt").stat().st_size - size) < 0.05 * size


@pytest.mark.parametrize("placement", ["pre", "peri", "post"])
def test_a_group_trains_what_the_single_run_trains(tmp_path, placement):
    """Against lnstab.train's own path: only LayerNorm's gain gradients differ in rounding, so the
    losses of a short training agree to float32 precision, not bit for bit."""
    cfg = tiny_config(f"model.placement={placement}")
    train(cfg, tmp_path / "single", verbose=False)
    train_group([tiny_config(f"model.placement={placement}")], [tmp_path / "group"], verbose=False)
    a = pd.read_csv(tmp_path / "single" / "metrics.csv")
    b = pd.read_csv(tmp_path / "group" / "metrics.csv")
    assert (a["train_loss"] - b["train_loss"]).abs().max() < 1e-4 * a["train_loss"].abs().max()
    assert a["val_loss"].dropna().iloc[-1] == pytest.approx(b["val_loss"].dropna().iloc[-1], rel=1e-4)


def test_a_group_checkpoint_resumes_alone(tmp_path):
    """A member's ckpt.pt is an ordinary run's: lnstab train resumes it (one AdamW step count per
    parameter, never one shared tensor counted once per parameter)."""
    short = ("train.steps=30", "train.ckpt_interval=10")
    train_group([tiny_config("seed=0", *short), tiny_config("seed=1", *short)], [tmp_path / "a", tmp_path / "b"],
                verbose=False)
    ck = torch.load(tmp_path / "a" / "ckpt.pt", weights_only=False)
    steps = {float(s["step"]) for s in ck["optimizer"]["state"].values()}
    assert steps == {30.0}
    # a longer schedule is another config: resume the final checkpoint's run state by hand
    from lnstab.train import Run
    from lnstab import checkpoint

    run = Run(tiny_config("seed=0", *short), tmp_path / "a", verbose=False)
    checkpoint.restore(run, tmp_path / "a" / "ckpt.pt")
    for p in run.model.parameters():
        p.grad = torch.zeros_like(p)
    run.optimizer.step()  # one more step: every parameter's count moves to 31 alone
    assert {float(s["step"]) for s in run.optimizer.state.values()} == {31.0}


def test_plan_groups_splits_by_shape_and_balances():
    cfgs = {f"pre{s}": tiny_config(f"seed={s}", f"model.dt={dt}") for s, dt in enumerate([1, 0.1, 1, 0.1, 1, 0.1, 1, 0.1, 1])}
    cfgs["deep"] = tiny_config("model.n_layer=3")
    cfgs["rms"] = tiny_config("model.norm=rmsnorm")
    cfgs["accum"] = tiny_config("train.grad_accum=2")
    groups = plan_groups(cfgs, max_runs=4)
    assert sorted(map(len, groups.values())) == [1, 1, 1, 3, 3, 3]
    assert groups["pre-L2-g0"] == ["pre0", "pre1", "pre2"] and groups["pre-L3-g0"] == ["deep"]
    assert "pre-L2-rmsnorm-g0" in groups and groups["alone-accum"] == ["accum"]
    assert group_key(cfgs["pre0"]) == group_key(cfgs["pre1"]) != group_key(cfgs["deep"])
    with pytest.raises(ValueError, match="max_runs"):
        plan_groups(cfgs, 0)


def test_a_group_of_different_shapes_is_refused_naming_the_key(tmp_path):
    from lnstab.runfolder import RunError

    with pytest.raises(RunError, match="model.n_layer"):
        train_group([tiny_config(), tiny_config("model.n_layer=3")], [tmp_path / "a", tmp_path / "b"], verbose=False)
    assert not (tmp_path / "a").exists()


SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from conftest import tiny_config
from lnstab.groups import train_group
from lnstab.train import PREEMPTED_EXIT, Preempted
extra = ("train.steps=300", "train.ckpt_interval=7", "train.log_interval=1", "probe.interval=50")
cfgs = [tiny_config(*g, *extra) for g in {group!r}]
try:
    train_group(cfgs, [{out!r} + f"/m{{i}}" for i in range(len(cfgs))], "g")
except Preempted as e:
    print(e, file=sys.stderr)
    sys.exit(PREEMPTED_EXIT)
"""


def _group_process(out):
    code = SCRIPT.format(tests=str(ROOT / "tests"), group=GROUP[:3], out=str(out))
    return subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_a_group_stopped_at_random_moments_resumes_bit_identically(tmp_path):
    """SIGKILL twice at random moments and SIGTERM at a random step: every member's results equal
    those of a group never stopped."""
    rng = random.Random()
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert _group_process(whole).wait() == 0
    for _ in range(2):  # each time a random number of steps past the last checkpoint, at a random instant
        target = _ckpt_step(stopped / "m0") + rng.randint(8, 60)
        proc, t0 = _group_process(stopped), time.time()
        while _ckpt_step(stopped / "m0") < target and proc.poll() is None and time.time() - t0 < 300:
            time.sleep(rng.uniform(0.001, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (stopped / "m0" / "summary.json").exists(), "the kills came too late to test anything"
    at = _ckpt_step(stopped / "m0") + rng.randint(5, 40)
    proc = _group_process(stopped)
    for line in proc.stderr:
        if "group g: step" in line and int(line.split("step ")[1].split("/")[0]) >= at:
            proc.send_signal(signal.SIGTERM)
            break
    err = proc.communicate(timeout=300)[1]
    assert proc.returncode == PREEMPTED_EXIT, err[-2000:]
    assert "the same command resumes" in err
    assert _group_process(stopped).wait() == 0
    for i in range(3):
        assert_same_results(whole / f"m{i}", stopped / f"m{i}")
        assert json.loads((stopped / f"m{i}" / "summary.json").read_text())["resumed_from_step"] > 0
        assert not list((stopped / f"m{i}").glob("*.tmp"))


def test_a_run_that_ended_keeps_its_final_weights_while_the_others_train(tmp_path):
    """The screen reads a diverged trial's model after its group has trained on: it holds the
    weights of the run's final checkpoint, not the updates that followed."""
    from lnstab.groups import TrainingGroup
    from lnstab.train import Run

    runs = [Run(tiny_config(*GROUP[i]), tmp_path / f"r{i}", verbose=False) for i in (0, 3)]
    TrainingGroup(runs, "two", verbose=False).fit()
    assert [r.state.status for r in runs] == ["completed", "diverged"]
    final = torch.load(tmp_path / "r3" / "ckpt.pt", weights_only=False)["model"]
    assert all(torch.equal(v, final[k]) for k, v in runs[1].model.state_dict().items())
