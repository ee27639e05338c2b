"""The planner's memory model against what autograd really keeps, and its study totals."""
import contextlib

import pytest
import torch
import yaml

from lnstab.config import load_config
from lnstab.model import GPT
from lnstab.plan import activation_bytes, parameter_count, plan_study, render
from lnstab.train import make_optimizer

from conftest import ROOT


def saved_bytes(model, idx, targets, precision):
    """Bytes of the distinct storages autograd saves for the backward pass (parameters excluded)."""
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    cast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), cast:
        model(idx, targets)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for ptr, n in storages.items() if ptr not in params)


# shapes the formula was not written from (odd widths, heads, lengths, vocabulary)
SHAPES = [(3, 48, 6, 24, 3, 77), (2, 40, 5, 20, 5, 130), (5, 24, 3, 12, 2, 50)]


@pytest.mark.parametrize("placement", ["pre", "peri", "post", "none", "output", "mix", "deepnorm"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_activation_estimate_matches_saved_tensors(placement, precision, checkpointing):
    for L, d, h, T, B, V in SHAPES:
        cfg = load_config(None, [f"model.placement={placement}", f"model.n_layer={L}", f"model.d_model={d}",
                                 f"model.n_head={h}", f"model.block_size={T}", f"model.vocab_size={V}"])
        cfg.train.precision = precision  # bf16 autocast on the CPU: the cast ops of a GPU's autocast
        torch.manual_seed(0)
        model = GPT(cfg.model)
        model.activation_checkpointing = checkpointing
        idx, targets = torch.randint(V, (B, T)), torch.randint(V, (B, T))
        measured = saved_bytes(model, idx, targets, precision)
        estimate = activation_bytes(cfg, B, checkpointing)
        assert abs(estimate - measured) <= 0.01 * measured + 256, (L, d, h, T, B, V, measured, estimate)


@pytest.mark.parametrize("placement", ["pre", "peri", "post", "none", "output", "mix", "deepnorm"])
@pytest.mark.parametrize("bias", [True, False])
def test_parameter_count_and_optimizer_state(placement, bias):
    cfg = load_config(None, [f"model.placement={placement}", "model.vocab_size=61", f"model.bias={bias}"])
    model = GPT(cfg.model)
    assert parameter_count(cfg) == sum(p.numel() for p in model.parameters())
    opt = make_optimizer(model, cfg, torch.device("cpu"))
    model(torch.randint(61, (2, 8)), torch.randint(61, (2, 8)))[1].backward()
    opt.step()
    state = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values() if t.ndim > 0)
    assert state == 8 * parameter_count(cfg)  # the planner's AdamW term: two fp32 moments


def test_paper_plan_warns_where_a_job_does_not_fit():
    study = yaml.safe_load((ROOT / "config" / "paper_xl.yaml").read_text())
    plan = plan_study(study)
    assert len(plan) == 6 and (plan["params_m"] > 1500).all()
    text = render(plan, study, "H100", 80.0, 0.35)
    assert "GPU-hours" in text
    # the same jobs without activation checkpointing and on one GPU cannot fit 80 GB
    study["base"]["train"]["activation_checkpointing"] = False
    study["resources"]["train"].update(gpu=1, processes=1)
    tight = plan_study(study)
    assert not tight["fits_memory"].any()
    assert "exceeds 90% of 80 GB" in render(tight, study, "H100", 80.0, 0.35)


@pytest.mark.parametrize("name", ["paper", "paper_xl"])
def test_committed_plans_are_current(name, capsys):
    """docs/plans/ (quoted by the README) is what `lnstab plan` prints today (`make plans`)."""
    from lnstab.cli import main

    main(["plan", str(ROOT / "config" / f"{name}.yaml")])
    committed = (ROOT / "docs" / "plans" / f"{name}.md").read_text()
    assert capsys.readouterr().out == committed
    study_line = next(line for line in committed.splitlines() if line.startswith("Study:"))
    assert study_line in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("resources", [{"train": 5}, 5])
def test_resources_that_are_not_a_mapping_are_one_line(tmp_path, capsys, resources):
    from lnstab.cli import main

    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"sweeps": [{"placement": ["pre"], "n_layer": [2]}], "resources": resources}))
    assert main(["plan", str(study)]) == 2
    err = capsys.readouterr().err
    assert "resources: expected a mapping" in err and str(study) in err
