"""Watching a run live (lnstab.watch): TensorBoard event files read back with tensorboard's own
reader, and W&B's calls, carry exactly the numbers of metrics.csv and probes.csv; watching
changes no number of the run."""
import sys
import types

import pandas as pd
import pytest

from conftest import tiny_config
from lnstab.config import ConfigError
from lnstab.train import TIMING_COLUMNS, train
from lnstab.watch import PROBE_KEYS


def _final_probe_tops(probes: pd.DataFrame) -> pd.DataFrame:
    """Per probe step, each quantity at the top of the stream x^(K)."""
    stream = probes[probes["point"].isin(["embed", "attn", "mlp"]) & probes["quantity"].isin(PROBE_KEYS)]
    return stream[stream["sublayer"] == stream["sublayer"].max()]


def test_tensorboard_event_files_hold_the_runs_numbers(tmp_path):
    pytest.importorskip("tensorboard")  # installed by envs/requirements.txt
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tiny_config(), tmp_path / "watched", verbose=False, watch=["tensorboard"])
    train(tiny_config(), tmp_path / "plain", verbose=False)
    metrics = pd.read_csv(tmp_path / "watched" / "metrics.csv")
    plain = pd.read_csv(tmp_path / "plain" / "metrics.csv")
    timing = [c for c in TIMING_COLUMNS if c in metrics]
    pd.testing.assert_frame_equal(metrics.drop(columns=timing), plain.drop(columns=timing), check_exact=True)
    for name in ("probes.csv", "bounds.csv"):
        assert (tmp_path / "watched" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes(), name

    events = EventAccumulator(str(tmp_path / "watched" / "tensorboard"))
    events.Reload()
    loss = events.Scalars("train/train_loss")
    assert [e.step for e in loss] == list(metrics["step"])
    assert [e.value for e in loss] == pytest.approx(list(metrics["train_loss"]), rel=1e-6)  # float32 on disk
    evaluated = metrics.dropna(subset=["val_loss"])
    val = events.Scalars("train/val_loss")
    assert [e.step for e in val] == list(evaluated["step"])
    assert [e.value for e in val] == pytest.approx(list(evaluated["val_loss"]), rel=1e-6)

    tops = _final_probe_tops(pd.read_csv(tmp_path / "watched" / "probes.csv"))
    norm = tops[tops["quantity"] == "mean_norm"]
    got = events.Scalars("probe/top/mean_norm")
    assert [e.step for e in got] == list(norm["step"]) == [0, 10, 20, 30]
    assert [e.value for e in got] == pytest.approx(list(norm["value"]), rel=1e-6)


def test_wandb_is_offline_and_gets_the_runs_numbers(tmp_path, monkeypatch):
    """W&B itself is an optional extra not installed here: a stand-in records what lnstab asks of it."""
    calls = {"init": [], "log": [], "finish": 0}

    class Run:
        def log(self, values, step):
            calls["log"].append((step, dict(values)))

        def finish(self):
            calls["finish"] += 1

    def init(**kw):
        calls["init"].append(kw)
        return Run()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    train(tiny_config(), tmp_path / "run", verbose=False, watch=["wandb"])
    (kw,) = calls["init"]
    assert kw["mode"] == "offline" and kw["dir"] == str(tmp_path / "run") and kw["config"]["train"]["steps"] == 30
    assert calls["finish"] == 1
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    logged = {step: v["train/train_loss"] for step, v in calls["log"] if "train/train_loss" in v}
    assert logged == dict(zip(metrics["step"], metrics["train_loss"]))  # the same floats, not a copy in float32
    probed = {step: v["probe/max/max_abs"] for step, v in calls["log"] if "probe/max/max_abs" in v}
    probes = pd.read_csv(tmp_path / "run" / "probes.csv")
    stream = probes[probes["point"].isin(["embed", "attn", "mlp"]) & (probes["quantity"] == "max_abs")]
    assert probed == pytest.approx(stream.groupby("step")["value"].max().to_dict(), rel=1e-15)


def test_an_unknown_watcher_is_a_config_error_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="watch: unknown 'tensorbord'"):
        train(tiny_config(), tmp_path / "run", verbose=False, watch=["tensorbord"])
    assert not (tmp_path / "run").exists()


def test_a_watcher_that_fails_is_dropped_and_the_run_goes_on(tmp_path, capsys):
    """--watch tensorboard where <run>/tensorboard cannot be a folder (a file of that name): one line
    says so, the run trains to the end, and its numbers are those of a run without a watcher."""
    pytest.importorskip("tensorboard")
    out = tmp_path / "watched"
    out.mkdir()
    (out / "tensorboard").write_text("not a folder\n")
    summary = train(tiny_config(), out, verbose=False, watch=["tensorboard"])
    assert summary["status"] == "completed"
    err = capsys.readouterr().err
    assert "watch tensorboard: start failed" in err and "the run goes on" in err, err
    train(tiny_config(), tmp_path / "plain", verbose=False)
    for name in ("probes.csv", "bounds.csv"):
        assert (out / name).read_bytes() == (tmp_path / "plain" / name).read_bytes(), name
