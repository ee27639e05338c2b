"""Every claim gives the verdict its synthetic runs table was built for: supported, refuted,
mixed or untested (the grid lacks what the claim needs), and only learned runs are judged."""

import pandas as pd
import pytest

from lnstab.claims import CLAIMS, claims_table, verdict


def run(placement, n_layer=8, dt=1.0, weight_decay=0.1, lr=0.01, seed=0, **stats):
    row = {"placement": placement, "n_layer": n_layer, "dt": dt, "weight_decay": weight_decay, "lr": lr,
           "seed": seed, "role": "study", "status": "completed", "learned": True, "final_val_loss": 2.0,
           "scale_step0": 1.0, "scale_final": 1.0, "scale_peak": 1.0, "shape_ratio": 1.5, "half_factor": 1.0,
           "massive_share": 0.1, "adjoint_ratio": 1.0, "grad_spread": 0.5, "top_var_entry": 1.0,
           "top_var_data": 0.5, "collapsed": False, "bound_checks": 10, "violations": 0,
           "max_check_ratio": 0.5, "max_increment_ratio": 0.5}
    row.update(stats)
    row["scale_growth_final"] = row["scale_final"] / row["scale_step0"]
    row["scale_growth_peak"] = row["scale_peak"] / row["scale_step0"]
    return row


def table(rows):
    return pd.DataFrame(rows)


def result(name, runs):
    holds, checked, numbers = CLAIMS[name].test(runs)
    assert isinstance(numbers, str)
    return verdict(holds, checked), holds, checked


def pre_peri(pre_scale, peri_scale, seeds=(0, 1), **kw):
    return table([run("pre", seed=s, scale_final=pre_scale, scale_peak=pre_scale, **kw) for s in seeds]
                 + [run("peri", seed=s, scale_final=peri_scale, scale_peak=peri_scale, **kw) for s in seeds])


def test_registry_has_the_nine_claims_in_one_place():
    assert list(CLAIMS) == ["pre_scale_grows_with_training", "pre_above_peri_trained", "wd_limits_pre",
                            "small_dt_limits_trained_pre", "depth_shape", "small_dt_uniform_adjoints",
                            "post_backward_collapse", "peri_loss_competitive", "zero_bound_violations"]
    t = claims_table(pre_peri(10.0, 2.0))
    assert list(t["claim"]) == list(CLAIMS) and set(t.columns) >= {"statement", "criterion", "numbers", "verdict"}


@pytest.mark.parametrize("name", ["pre_scale_grows_with_training", "pre_above_peri_trained"])
def test_pre_against_peri_scale(name):
    assert result(name, pre_peri(10.0, 2.0))[0] == "supported"
    assert result(name, pre_peri(2.0, 10.0))[0] == "refuted"
    mixed = pre_peri(10.0, 2.0)
    mixed.loc[(mixed["placement"] == "pre") & (mixed["seed"] == 1), ["scale_final", "scale_growth_final"]] = 1.0
    assert result(name, mixed)[0] == "mixed"
    assert result(name, table([run("pre", scale_final=9.0)]))[0] == "untested"  # no Peri-LN to compare


def test_runs_that_did_not_learn_are_not_judged():
    runs = pre_peri(2.0, 10.0)  # would refute
    runs.loc[runs["placement"] == "peri", "learned"] = False
    assert result("pre_above_peri_trained", runs)[0] == "untested"
    runs.loc[runs["placement"] == "peri", ["learned", "role"]] = [True, "instability_demo"]
    assert result("pre_above_peri_trained", runs)[0] == "untested"


def test_wd_limits_pre_only_at_matched_loss():
    rows = [run("pre", weight_decay=0.0, scale_final=8.0, scale_peak=9.0, final_val_loss=2.00),
            run("pre", weight_decay=0.1, scale_final=4.0, scale_peak=5.0, final_val_loss=2.01)]
    assert result("wd_limits_pre", table(rows))[0] == "supported"
    rows[1]["scale_peak"] = 10.0  # peak above: final alone is not enough
    assert result("wd_limits_pre", table(rows))[0] == "refuted"
    rows[1].update(scale_peak=5.0, final_val_loss=2.5)  # losses 25% apart: not a matched pair
    assert result("wd_limits_pre", table(rows))[0] == "untested"
    assert result("wd_limits_pre", table([rows[0]]))[0] == "untested"


def test_small_dt_limits_trained_pre():
    rows = [run("pre", dt=1.0, scale_final=8.0), run("pre", dt=0.1, scale_final=1.0)]
    assert result("small_dt_limits_trained_pre", table(rows))[0] == "supported"
    rows[1]["scale_final"] = 9.0
    assert result("small_dt_limits_trained_pre", table(rows))[0] == "refuted"
    assert result("small_dt_limits_trained_pre", table(rows[:1]))[0] == "untested"


def test_depth_shape_at_the_largest_depth():
    rows = [run("pre", n_layer=16, shape_ratio=5.0), run("peri", n_layer=16, shape_ratio=1.5),
            run("pre", n_layer=4, shape_ratio=1.0)]  # shallower runs are not counted
    assert result("depth_shape", table(rows))[:3] == ("supported", 2, 2)
    rows[1]["shape_ratio"] = 3.0
    assert result("depth_shape", table(rows))[0] == "mixed"
    assert result("depth_shape", table(rows[:1]))[0] == "untested"


def test_small_dt_uniform_adjoints_uses_means_over_seeds():
    rows = [run("peri", dt=dt, seed=s, adjoint_ratio=r, grad_spread=g)
            for dt, s, r, g in [(1.0, 0, 100.0, 2.0), (1.0, 1, 10.0, 2.0), (0.1, 0, 2.0, 0.5), (0.1, 1, 200.0, 0.5)]]
    # means of |log10 ratio|: dt 1 -> 1.5, dt 0.1 -> 1.3: smaller, and spread smaller
    assert result("small_dt_uniform_adjoints", table(rows))[0] == "supported"
    rows[3]["adjoint_ratio"] = 1e4  # dt 0.1 mean |log10| -> 2.15
    assert result("small_dt_uniform_adjoints", table(rows))[0] == "refuted"
    assert result("small_dt_uniform_adjoints", table(rows[:2]))[0] == "untested"


def test_post_backward_collapse():
    demo = run("post", lr=0.01, role="instability_demo", learned=False, adjoint_ratio=1e-9, collapsed=True)
    stable = run("post", lr=0.002, adjoint_ratio=0.3, collapsed=False)
    assert result("post_backward_collapse", table([demo, stable]))[:3] == ("supported", 2, 2)
    assert result("post_backward_collapse", table([{**demo, "adjoint_ratio": 0.5}, stable]))[0] == "mixed"
    assert result("post_backward_collapse", table([{**demo, "collapsed": False}, {**stable, "collapsed": True}]))[0] == "refuted"
    assert result("post_backward_collapse", table([stable]))[0] == "untested"


def test_peri_loss_competitive_needs_two_seeds_and_uses_the_spread():
    def runs(peri_losses, pre_losses):
        return table([run("peri", seed=s, final_val_loss=v) for s, v in enumerate(peri_losses)]
                     + [run("pre", seed=s, final_val_loss=v) for s, v in enumerate(pre_losses)])
    assert result("peri_loss_competitive", runs([2.01, 2.03], [2.00, 2.00]))[0] == "supported"
    assert result("peri_loss_competitive", runs([2.50, 2.52], [2.00, 2.01]))[0] == "refuted"
    # 10% apart on average, but the seeds spread over 1 nat: within two standard errors
    assert result("peri_loss_competitive", runs([1.7, 2.7], [2.0, 2.0]))[0] == "supported"
    assert result("peri_loss_competitive", runs([2.0], [2.0]))[0] == "untested"
    # each placement at its best configuration: a bad Pre-LN dt does not make Peri-LN look good
    t = runs([2.3, 2.3], [2.0, 2.0])
    t = pd.concat([t, table([run("peri", dt=0.1, seed=s, final_val_loss=2.0) for s in (0, 1)])])
    assert result("peri_loss_competitive", t)[0] == "supported"


def test_zero_bound_violations_counts_checks_that_can_fail():
    rows = [run("pre"), run("peri")]
    assert result("zero_bound_violations", table(rows))[:3] == ("supported", 2, 2)
    rows[0]["violations"] = 1
    assert result("zero_bound_violations", table(rows))[0] == "mixed"
    assert result("zero_bound_violations", table([{**rows[1], "bound_checks": 0}]))[0] == "untested"


def test_verdicts():
    assert [verdict(h, n) for h, n in [(0, 0), (3, 3), (0, 3), (1, 3)]] == ["untested", "supported", "refuted", "mixed"]


def test_every_claim_is_untested_on_an_empty_study():
    empty = table([run("pre", learned=False, bound_checks=0)])
    assert set(claims_table(empty)["verdict"]) == {"untested"}
