"""Statistics of lnstab.stats and lnstab.baselines on tables whose answers are known by construction."""
import math

import numpy as np
import pandas as pd
import pytest

from lnstab.baselines import cross_entropies, learned_status
from lnstab.stats import depth_shape, increment_ratios, run_stats, scale_table, tightness_table

KEYS = {"placement": "pre", "n_layer": 2, "dt": 1.0, "weight_decay": 0.1, "lr": 0.01, "seed": 0, "init_scale": 1.0,
        "fold_dt": False}


def test_cross_entropies_equal_their_definition():
    train = np.array([0, 1, 0, 1, 0, 2])
    val = np.array([0, 1, 2])
    V = 4
    got = cross_entropies(train, val, V)
    uni = np.array([3, 2, 1, 0]) + 1.0
    p = uni / uni.sum()
    assert got["unigram_nats"] == pytest.approx(-np.mean(np.log(p[val])))
    # pairs in train: 01 01 10 10 02; left counts: 0:3 1:2
    p01 = (2 + 1) / (3 + V)
    p12 = (0 + 1) / (2 + V)
    assert got["bigram_nats"] == pytest.approx(-(math.log(p01) + math.log(p12)) / 2)


def test_bigram_beats_unigram_on_a_predictable_corpus():
    train = np.tile([0, 1, 2, 3], 1000)
    val = np.tile([0, 1, 2, 3], 50)
    got = cross_entropies(train, val, 4)
    assert got["bigram_nats"] < 0.01 < got["unigram_nats"] == pytest.approx(math.log(4), rel=1e-3)


def test_learned_status():
    assert learned_status(2.0, unigram=3.3, bigram=2.5) == (True, False)
    assert learned_status(2.9, unigram=3.3, bigram=2.5) == (False, False)
    assert learned_status(3.3 * 0.99, unigram=3.3, bigram=2.5) == (False, True)  # within 2% of unigram
    assert learned_status(None, unigram=3.3, bigram=2.5) == (False, True)


def test_depth_shape():
    linear = 1.0 + np.arange(9.0)  # k = 0..8
    s = depth_shape(linear)
    assert s["shape_ratio"] == pytest.approx(9 / 5)
    assert s["massive_share"] == pytest.approx(1 / 7)  # seven equal increments from k = 1 to 8
    expo = 2.0 ** np.arange(9.0)
    e = depth_shape(expo)
    assert e["shape_ratio"] == pytest.approx(16) and e["half_factor"] == pytest.approx(2.0)
    jump = np.array([0.1, 1, 1, 1, 50, 50, 50, 50, 51])  # one massive sub-layer (k = 4)
    assert depth_shape(jump)["massive_share"] == pytest.approx(49 / 50)
    assert math.isnan(depth_shape(np.array([1.0, 0.0, 2.0]))["shape_ratio"])


def _probe_rows(step, top, var_entry=1.0, var_data=0.5, spectral=1.0, adj=(4.0, 2.0, 1.0)):
    rows = []
    for k, (point, layer) in enumerate([("embed", -1), ("attn", 0), ("mlp", 0)]):
        for q, v in {"mean_abs": top * (k + 1) / 3, "var_entry": var_entry, "var_data": var_data,
                     "adjoint_norm": adj[k]}.items():
            rows.append({**KEYS, "step": step, "point": point, "layer": layer, "sublayer": k, "quantity": q, "value": v})
    rows.append({**KEYS, "step": step, "point": "mlp.f.fc.weight", "layer": 0, "sublayer": 2,
                 "quantity": "spectral_norm", "value": spectral})
    for layer, g in ((0, 1.0), (1, 100.0)):
        rows.append({**KEYS, "step": step, "point": "block", "layer": layer, "sublayer": -1, "quantity": "grad_norm", "value": g})
    return rows


def _bound_rows(step, measured, bound, kind="check", quantity="var_entry"):
    return [{**KEYS, "step": step, "point": "embed", "layer": -1, "sublayer": 0, "quantity": quantity,
             "measured": 4.0, "lower": np.nan, "bound": 4.0, "ratio": 1.0, "kind": "start", "violation": False},
            {**KEYS, "step": step, "point": "attn", "layer": 0, "sublayer": 1, "quantity": quantity,
             "measured": measured, "lower": np.nan, "bound": bound, "ratio": measured / bound, "kind": kind,
             "violation": False}]


def test_increment_ratio_in_seminorm_units():
    b = pd.DataFrame(_bound_rows(10, measured=9.0, bound=16.0))
    r = increment_ratios(b)
    # sqrt units: (3 - 2) / (4 - 2)
    assert len(r) == 1 and r["increment_ratio"].item() == pytest.approx(0.5)
    m = pd.DataFrame(_bound_rows(10, measured=3.0, bound=4.0, quantity="mean_abs"))
    m.loc[0, "measured"] = 2.0
    assert increment_ratios(m)["increment_ratio"].item() == pytest.approx(0.5)


def test_run_stats_and_scale_over_training():
    probes = pd.DataFrame(_probe_rows(0, top=3.0) + _probe_rows(50, top=30.0, spectral=5.0)
                          + _probe_rows(100, top=12.0, var_data=1e-6, spectral=4.0))
    bounds = pd.DataFrame(_bound_rows(0, 9.0, 16.0) + _bound_rows(100, 9.0, 16.0)
                          + [{**r, "kind": "diagnostic", "quantity": "adjoint_ratio", "measured": 4.0, "bound": 4e5}
                             for r in _bound_rows(100, 1, 1)[:1]])
    sc = scale_table(probes)
    assert list(sc["top_mean_abs"]) == [3.0, 30.0, 12.0] and list(sc["max_spectral_norm"]) == [1.0, 5.0, 4.0]
    s = run_stats(probes, bounds).iloc[0]
    assert s["scale_growth_final"] == pytest.approx(4.0) and s["scale_growth_peak"] == pytest.approx(10.0)
    assert s["adjoint_ratio"] == pytest.approx(4.0) and s["grad_spread"] == pytest.approx(2.0)
    assert bool(s["collapsed"])  # data-wise variance 1e-6 of the entry-wise
    assert s["max_check_ratio"] == pytest.approx(9 / 16)
    assert s["backward_slack_log10"] == pytest.approx(5.0)


def test_growth_by_training_is_measured_from_the_end_of_warmup():
    """Growth out of the initialisation (step 0 -> warmup) and by training (warmup -> final) apart,
    the peak step and final / peak; with no warmup given, the reference is step 0."""
    probes = pd.DataFrame(_probe_rows(0, top=1.0) + _probe_rows(50, top=2.0) + _probe_rows(100, top=8.0)
                          + _probe_rows(150, top=16.0) + _probe_rows(200, top=4.0))
    bounds = pd.DataFrame(_bound_rows(200, 3.0, 20.0, quantity="mean_abs"))
    warmup = pd.DataFrame([{**KEYS, "warmup_steps": 90}])
    s = run_stats(probes, bounds, warmup).iloc[0]
    assert (s["warmup_step"], s["scale_warmup"]) == (100, 8.0)  # the first probe at or after step 90
    assert s["scale_growth_init"] == pytest.approx(8.0) and s["scale_growth_train"] == pytest.approx(0.5)
    assert s["peak_step"] == 150 and s["scale_final_over_peak"] == pytest.approx(0.25)
    assert s["scale_bound_final"] == pytest.approx(20.0)
    s0 = run_stats(probes, bounds).iloc[0]
    assert s0["warmup_step"] == 0 and s0["scale_growth_train"] == pytest.approx(4.0)


def test_tightness_reports_rows_that_cannot_fail_apart():
    b = pd.DataFrame(_bound_rows(100, 9.0, 16.0) + [{**r, "kind": "ln_identity"} for r in _bound_rows(100, 1.0, 1.0)[1:]])
    t = tightness_table(b).set_index("quantity")
    assert t.loc["var_entry", "checks"] == 1 and t.loc["var_entry", "violations"] == 0
    assert t.loc["(ln_identity rows)", "not_counted"] == 1 and t.loc["(start rows)", "not_counted"] == 1
