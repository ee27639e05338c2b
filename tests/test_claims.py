"""Every claim gives the verdict its synthetic runs table was built for: supported, mixed, refuted,
undecided (within seed noise) or untested (the grid lacks what the claim needs), with the effect
and its interval over seeds; only learned study runs are judged; demonstrations and software
checks are tables of their own."""

import math

import numpy as np
import pandas as pd
import pytest

from lnstab.claims import (CLAIMS, Evidence, claims_table, decide, demonstrations_table, depth_exponents,
                           reference_table, software_checks_table)
from lnstab.stats import dt_ablation_table


def run(placement, n_layer=8, dt=1.0, weight_decay=0.1, lr=0.01, seed=0, **stats):
    row = {"placement": placement, "n_layer": n_layer, "dt": dt, "weight_decay": weight_decay, "lr": lr,
           "seed": seed, "init_scale": 1.0, "fold_dt": False, "role": "study", "status": "completed",
           "learned": True, "final_val_loss": 2.0, "scale_step0": 1.0, "scale_warmup": 1.0, "warmup_step": 100,
           "scale_final": 1.0, "scale_peak": 1.0, "peak_step": 800, "shape_ratio": 1.5, "half_factor": 1.0,
           "massive_share": 0.1, "adjoint_ratio": 1.0, "grad_spread": 0.5, "top_var_entry": 1.0,
           "top_var_data": 0.5, "collapsed": False, "bound_checks": 10, "violations": 0,
           "max_check_ratio": 0.5, "max_increment_ratio": 0.5, "scale_bound_final": 10.0}
    row.update(stats)
    row["scale_growth_final"] = row["scale_final"] / row["scale_step0"]
    row["scale_growth_peak"] = row["scale_peak"] / row["scale_step0"]
    row["scale_growth_init"] = row["scale_warmup"] / row["scale_step0"]
    row["scale_growth_train"] = row["scale_final"] / row["scale_warmup"]
    row["scale_final_over_peak"] = row["scale_final"] / row["scale_peak"]
    return row


def table(rows):
    return pd.DataFrame(rows)


def result(name, runs):
    """(verdict, effect, ci_low, ci_high, seeds, holds, checked)"""
    ev = CLAIMS[name].test(runs)
    assert isinstance(ev.numbers, str)
    return (*decide(CLAIMS[name], ev), ev.holds, ev.checked)


SEEDS = (0, 1, 2)


def pre_peri(pre_scales, peri_scales, **kw):
    """Pre-LN and Peri-LN runs, one per seed, with the given final scales (warmup scale 1)."""
    return table([run("pre", seed=s, scale_final=v, scale_peak=v, **kw) for s, v in enumerate(pre_scales)]
                 + [run("peri", seed=s, scale_final=v, scale_peak=v, **kw) for s, v in enumerate(peri_scales)])


def test_registry_splits_the_compound_claims_and_keeps_demos_and_checks_out():
    assert list(CLAIMS) == ["pre_scale_grows_after_warmup", "pre_scale_grows_more_than_peri",
                            "pre_above_peri_trained", "wd_limits_pre",
                            "small_dt_limits_trained_pre", "peri_depth_at_most_linear",
                            "pre_depth_faster_than_linear", "small_dt_uniform_adjoints",
                            "small_dt_uniform_grad_spread", "peri_loss_competitive"]
    t = claims_table(pre_peri([10.0, 11, 12], [2.0, 2.1, 2.2]))
    assert list(t["claim"]) == list(CLAIMS) and set(t["condition"]) == {"all", "dt=1"}
    assert {"effect", "ci_low", "ci_high", "seeds", "verdict", "effect_is"} <= set(t.columns)


@pytest.mark.parametrize("name", ["pre_scale_grows_more_than_peri", "pre_above_peri_trained"])
def test_pre_against_peri_scale_every_verdict(name):
    assert result(name, pre_peri([10.0, 11, 12], [2.0, 2.1, 2.2]))[0] == "supported"
    assert result(name, pre_peri([2.0, 2.1, 2.2], [10.0, 11, 12]))[0] == "refuted"
    # the effect is large on average but one seed goes the other way: the interval spans 0
    assert result(name, pre_peri([10.0, 0.5, 10], [2.0, 2.0, 2.0]))[0] == "undecided"
    # every seed above on average, one comparison of a seed below: mixed
    rows = pre_peri([10.0, 11, 12], [2.0, 2.1, 2.2])
    rows = pd.concat([rows, pre_peri([10.0, 11, 1.9], [2.0, 2.1, 2.2], n_layer=16)], ignore_index=True)
    assert result(name, rows)[0] == "mixed"
    assert result(name, table([run("pre", scale_final=9.0)]))[0] == "untested"  # no Peri-LN to compare
    # one seed cannot decide, however large the effect: no interval
    assert result(name, pre_peri([10.0], [2.0]))[0] == "untested"


def test_effect_is_the_mean_over_seeds_with_a_t_interval():
    v, effect, lo, hi, n, holds, checked = result("pre_above_peri_trained", pre_peri([10.0, 20, 40], [1.0, 1, 1]))
    assert n == 3 and (holds, checked) == (3, 3)
    assert effect == pytest.approx(np.mean(np.log10([10, 20, 40])))
    half = 4.302653 * np.std(np.log10([10, 20, 40]), ddof=1) / math.sqrt(3)  # t(0.975, 2)
    assert (lo, hi) == pytest.approx((effect - half, effect + half), rel=1e-5)


def test_growth_is_measured_from_the_end_of_warmup_not_from_step_0():
    # Pre-LN grew 20x out of the initialisation and nothing after; Peri-LN grew 2x after warmup
    rows = [run("pre", seed=s, scale_step0=0.02, scale_warmup=0.4, scale_final=0.4, scale_peak=0.5) for s in SEEDS]
    rows += [run("peri", seed=s, scale_step0=0.1, scale_warmup=0.2, scale_final=0.4 + 0.01 * s) for s in SEEDS]
    r = result("pre_scale_grows_more_than_peri", table(rows))
    assert r[0] == "refuted"  # from step 0 it would be 20x against 4x: "supported"
    assert result("pre_scale_grows_after_warmup", table(rows))[0] == "undecided"  # x1.0 in every seed: no interval
    ev = CLAIMS["pre_scale_grows_more_than_peri"].test(table(rows))
    assert "out of the init" in ev.numbers and "peak step" in ev.numbers


def test_runs_that_did_not_learn_are_not_judged():
    runs = pre_peri([2.0, 2.1, 2.2], [10.0, 11, 12])  # would refute
    runs.loc[runs["placement"] == "peri", "learned"] = False
    assert result("pre_above_peri_trained", runs)[0] == "untested"
    runs.loc[runs["placement"] == "peri", ["learned", "role"]] = [True, "instability_demo"]
    assert result("pre_above_peri_trained", runs)[0] == "untested"


def test_wd_limits_pre_only_at_matched_loss():
    def rows(peak_wd=5.0, loss_wd=2.01):
        return [r for s in SEEDS for r in (
            run("pre", seed=s, weight_decay=0.0, scale_final=8.0 + s, scale_peak=9.0 + s, final_val_loss=2.00),
            run("pre", seed=s, weight_decay=0.1, scale_final=4.0, scale_peak=peak_wd, final_val_loss=loss_wd))]
    assert result("wd_limits_pre", table(rows()))[0] == "supported"
    assert result("wd_limits_pre", table(rows(peak_wd=20.0)))[0] == "mixed"  # final below, peak above
    assert result("wd_limits_pre", table(rows(loss_wd=2.5)))[0] == "untested"  # losses 25% apart
    assert result("wd_limits_pre", table(rows()[:1]))[0] == "untested"


def test_small_dt_limits_trained_pre_ignores_folded_runs():
    rows = [r for s in SEEDS for r in (run("pre", seed=s, dt=1.0, scale_final=8.0 + s),
                                       run("pre", seed=s, dt=0.1, scale_final=1.0))]
    assert result("small_dt_limits_trained_pre", table(rows))[0] == "supported"
    folded = [run("pre", seed=s, dt=0.1, fold_dt=True, scale_final=100.0) for s in SEEDS]
    assert result("small_dt_limits_trained_pre", table(rows + folded))[0] == "supported"
    assert result("small_dt_limits_trained_pre", table(rows[:1]))[0] == "untested"


def depth_runs(placement, exponents, depths=(4, 8, 16), bound_exponent=3.0):
    return [run(placement, n_layer=L, seed=s, scale_final=0.1 * L ** a, scale_bound_final=L ** bound_exponent)
            for s, a in enumerate(exponents) for L in depths]


def test_depth_exponent_is_fitted_across_depths():
    fit = depth_exponents(table(depth_runs("pre", [1.5, 0.5])), "scale_final")
    assert list(fit["exponent"]) == pytest.approx([1.5, 0.5])
    assert fit["depths"].iloc[0] == "4,8,16"
    assert depth_exponents(table([run("pre", n_layer=8)]), "scale_final").empty


@pytest.mark.parametrize("name,placement,faster", [("pre_depth_faster_than_linear", "pre", True),
                                                   ("peri_depth_at_most_linear", "peri", False)])
def test_depth_claims_each_placement_apart(name, placement, faster):
    fast, slow = [1.6, 1.7, 1.8], [0.5, 0.55, 0.6]
    assert result(name, table(depth_runs(placement, fast if faster else slow)))[0] == "supported"
    assert result(name, table(depth_runs(placement, slow if faster else fast)))[0] == "refuted"
    assert result(name, table(depth_runs(placement, [0.5, 1.0, 1.5])))[0] == "undecided"
    # the other placement's runs do not enter, and one depth cannot give an exponent
    other = "peri" if placement == "pre" else "pre"
    assert result(name, table(depth_runs(other, fast)))[0] == "untested"
    assert result(name, table(depth_runs(placement, fast, depths=(16,))))[0] == "untested"
    ev = CLAIMS[name].test(table(depth_runs(placement, fast)))
    assert "bound's own exponent median 3" in ev.numbers


def small_dt(adjoints_small, adjoints_large, spread_small=0.5, spread_large=2.0):
    return table([r for s, (a, b) in enumerate(zip(adjoints_small, adjoints_large)) for r in (
        run("peri", dt=0.1, seed=s, adjoint_ratio=a, grad_spread=spread_small + 0.01 * s),
        run("peri", dt=1.0, seed=s, adjoint_ratio=b, grad_spread=spread_large))])


def test_small_dt_adjoints_and_spread_are_judged_apart():
    t = small_dt([2.0, 3.0, 2.5], [100.0, 50.0, 80.0], spread_small=2.0, spread_large=2.0)
    assert result("small_dt_uniform_adjoints", t)[0] == "supported"
    assert result("small_dt_uniform_grad_spread", t)[0] == "undecided"  # equal spreads: no effect
    t = small_dt([200.0, 1e3, 500.0], [2.0, 3.0, 2.5])
    assert result("small_dt_uniform_adjoints", t)[0] == "refuted"
    assert result("small_dt_uniform_grad_spread", t)[0] == "supported"
    # the spread claim compares spreads: it needs 3 seeds
    two = small_dt([2.0, 2.1], [100.0, 100.0])
    assert result("small_dt_uniform_grad_spread", two)[0] == "untested"
    assert "needs 3" in claims_table(two).set_index("claim").loc["small_dt_uniform_grad_spread", "numbers"]
    assert result("small_dt_uniform_adjoints", two)[0] == "supported"


def tuning_runs(best, lrs=(3e-3, 6e-3, 1e-2), scales=(1.0, 0.1), placements=("pre", "peri", "post"), dt=1.0,
                best_trial=2):
    """Every placement at every lr x init scale x seed; ``best[p]`` the loss of p's best trial per
    seed, every other trial 0.3 worse."""
    rows = []
    for p in placements:
        for i, (lr, sc) in enumerate((lr, sc) for lr in lrs for sc in scales):
            for s, v in enumerate(best[p]):
                rows.append(run(p, lr=lr, init_scale=sc, seed=s, dt=dt,
                                final_val_loss=v + (0 if i == best_trial else 0.3)))
    return table(rows)


def test_peri_loss_competitive_best_against_best_with_equal_budgets():
    good = {"pre": [2.00, 2.01, 2.02], "peri": [2.01, 2.02, 2.02], "post": [2.2, 2.2, 2.2]}
    r = result("peri_loss_competitive", tuning_runs(good))
    assert r[0] == "supported" and r[4] == 3
    bad = {**good, "peri": [2.30, 2.31, 2.32]}
    assert result("peri_loss_competitive", tuning_runs(bad))[0] == "refuted"
    noisy = {**good, "peri": [1.8, 2.4, 2.1]}
    assert result("peri_loss_competitive", tuning_runs(noisy))[0] == "undecided"
    # Peri-LN tried at more settings than Pre-LN: not a fair comparison, untested
    extra = pd.concat([tuning_runs(good), table([run("peri", lr=1e-2, init_scale=0.3, seed=s) for s in SEEDS])])
    assert result("peri_loss_competitive", extra)[0] == "untested"
    # one learning rate each (the default study): untested
    assert result("peri_loss_competitive", tuning_runs(good, lrs=(1e-2,)))[0] == "untested"
    # two seeds are not enough to compare losses
    two = {p: v[:2] for p, v in good.items()}
    assert result("peri_loss_competitive", tuning_runs(two))[0] == "untested"


def test_peri_loss_competitive_reports_peri_against_pre_at_dt_1():
    good = {"pre": [2.00, 2.01, 2.02], "peri": [2.01, 2.02, 2.02], "post": [2.2, 2.2, 2.2]}
    worse_at_1 = {**good, "peri": [2.12, 2.13, 2.14]}
    t = pd.concat([tuning_runs(good, dt=0.1), tuning_runs(worse_at_1)])
    ev = CLAIMS["peri_loss_competitive"].test(t)
    assert "at dt 1: peri - pre +0.12 nats" in ev.numbers
    assert "edge of the grid" not in ev.numbers  # every best trial at the middle learning rate
    edge = CLAIMS["peri_loss_competitive"].test(tuning_runs(good, best_trial=0))  # at lr 3e-3, the grid's lowest
    assert "best lr at the edge of the grid for peri, post, pre" in edge.numbers
    # an optimum that may lie outside the grid decides nothing, whatever the effect
    assert result("peri_loss_competitive", tuning_runs(good, best_trial=0))[0] == "untested"
    assert result("peri_loss_competitive", tuning_runs(good, best_trial=5))[0] == "untested"  # at 1e-2, the largest


def test_peri_loss_competitive_reports_peri_at_the_packages_own_init_beside_the_tuned_one():
    """Where the tuned best trial uses a last-map init x0.1, Peri-LN at the package's own init (x1)
    against Pre-LN at dt 1 is reported next to it: here every x1 trial is 0.3 nats worse."""
    good = {"pre": [2.00, 2.01, 2.02], "peri": [2.00, 2.01, 2.02], "post": [2.2, 2.2, 2.2]}
    ev = CLAIMS["peri_loss_competitive"].test(tuning_runs(good, best_trial=3))  # lr 6e-3, init x0.1
    assert "at dt 1: peri - pre +0 nats [+0, +0] over 3 seeds (tuned init)" in ev.numbers
    assert "with the package's own init x1 (best lr 0.003) +0.3 nats [+0.3, +0.3]" in ev.numbers
    only_own = CLAIMS["peri_loss_competitive"].test(tuning_runs(good, scales=(1.0,)))
    assert "own init" not in only_own.numbers  # nothing tuned about the init: nothing to set beside it


def test_decide_reads_the_side_of_the_claim():
    c = CLAIMS["peri_depth_at_most_linear"]  # below 1
    seeds = lambda *v: pd.Series(v, index=range(len(v)))  # noqa: E731
    assert decide(c, Evidence(3, 3, "", seeds(0.5, 0.6, 0.55)))[0] == "supported"
    assert decide(c, Evidence(3, 3, "", seeds(1.5, 1.6, 1.55)))[0] == "refuted"
    assert decide(c, Evidence(2, 3, "", seeds(0.5, 0.6, 0.55)))[0] == "mixed"
    assert decide(c, Evidence(0, 0, "", None))[0] == "untested"


def test_demonstrations_are_their_own_table():
    demo = [run("post", lr=0.01, seed=s, role="instability_demo", learned=False, adjoint_ratio=r,
                top_var_data=1e-15) for s, r in enumerate([1e-9, 1e-12, 0.5])]
    runs = table(demo + [run("post", lr=0.002)])
    d = demonstrations_table(runs)
    assert len(d) == 3 and list(d["demonstrated"]) == [True, True, False]
    assert "post_backward_collapse" not in CLAIMS


def test_software_checks_count_every_run():
    rows = [run("pre"), run("peri", learned=False)]
    sw = software_checks_table(table(rows))
    assert (sw["result"].iloc[0], sw["runs_ok"].iloc[0], sw["runs"].iloc[0]) == ("pass", 2, 2)
    rows[0]["violations"] = 1
    assert software_checks_table(table(rows))["result"].iloc[0] == "fail"
    assert software_checks_table(table([{**rows[1], "bound_checks": 0}]))["result"].iloc[0] == "untested"


def test_dt_ablation_lists_the_variants():
    rows = [run("peri", n_layer=16, dt=dt, init_scale=sc, fold_dt=fold, seed=s, final_val_loss=v)
            for dt, sc, fold, v in [(0.1, 1.0, False, 2.19), (0.1, 1.0, True, 2.19), (1.0, 0.1, False, 2.20),
                                    (1.0, 1.0, False, 2.38)] for s in (0, 1)]
    ab = dt_ablation_table(table(rows + [run("pre", n_layer=16)]))
    assert list(ab["variant"]) == ["dt as the step", "dt folded into the last maps", "last-map init scaled",
                                   "dt as the step"]
    assert list(ab["seeds"]) == [2, 2, 2, 2] and set(ab["placement"]) == {"peri"}


def test_every_claim_is_untested_on_an_empty_study():
    empty = table([run("pre", learned=False, bound_checks=0)])
    assert set(claims_table(empty)["verdict"]) == {"untested"}


def test_readme_quotes_the_committed_verdicts():
    """The README's studies table quotes each committed study's verdicts: they equal its claims.csv."""
    import re

    from conftest import ROOT

    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `config/(\w+)\.yaml`[^|]*\|(.*)$",
                                                        (ROOT / "README.md").read_text(), re.M)}
    checked = 0
    for study, results in (("config", "results"), ("extended", "results/extended"), ("tuning", "results/tuning")):
        path = ROOT / results / "tables" / "claims.csv"
        if not path.exists() or study not in rows:
            continue
        table = pd.read_csv(path)
        if "condition" not in table:  # a study committed before claims were split
            table["condition"] = "all"
        verdicts = table.set_index(["claim", "condition"])["verdict"]
        quoted = re.findall(r"`(\w+)`(?: at (dt=[\d.]+))? (supported|mixed|refuted|undecided|untested)", rows[study])
        for claim, condition, verdict in quoted:
            assert verdicts[(claim, condition or "all")] == verdict, (study, claim, condition)
        checked += len(quoted)
    assert checked > 0


def opposite_at_two_dt():
    """Pre-LN grows about 3x after warmup at dt 1 and shrinks about 3x at dt 0.1; Peri-LN stays (1x)."""
    rows = []
    for s in SEEDS:
        rows += [run("pre", seed=s, dt=1.0, scale_final=3.0 + 0.1 * s), run("peri", seed=s, dt=1.0),
                 run("pre", seed=s, dt=0.1, scale_final=0.3 + 0.02 * s), run("peri", seed=s, dt=0.1)]
    return table(rows)


def test_growth_claims_are_judged_per_dt_where_pooling_would_read_undecided():
    runs = opposite_at_two_dt()
    t = claims_table(runs).set_index(["claim", "condition"])
    for name in ("pre_scale_grows_after_warmup", "pre_scale_grows_more_than_peri"):
        assert t.loc[(name, "dt=1"), "verdict"] == "supported"
        assert t.loc[(name, "dt=0.1"), "verdict"] == "refuted"
        assert t.loc[(name, "dt=1"), "checked"] == 3  # one comparison per seed at each dt
        assert result(name, runs)[0] == "undecided"  # what the pooled claim would have said
    assert (t.xs("all", level="condition")["checked"] > 0).any()  # unsplit claims keep one row


def test_the_first_half_is_pre_lns_own_growth_whatever_peri_does():
    rows = [run("pre", seed=s, scale_final=2.0 + 0.1 * s) for s in SEEDS]
    rows += [run("peri", seed=s, scale_final=5.0 + 0.1 * s) for s in SEEDS]  # Peri-LN grows more
    assert result("pre_scale_grows_after_warmup", table(rows))[0] == "supported"
    assert result("pre_scale_grows_more_than_peri", table(rows))[0] == "refuted"
    shrinks = [run("pre", seed=s, scale_final=0.5 + 0.01 * s) for s in SEEDS]
    assert result("pre_scale_grows_after_warmup", table(shrinks))[0] == "refuted"


def test_dt_folded_runs_are_not_more_pairs_of_the_growth_comparison():
    runs = opposite_at_two_dt()
    folded = runs[runs["dt"] == 0.1].assign(fold_dt=True, scale_final=50.0)  # would turn dt 0.1 around
    both = pd.concat([runs, folded], ignore_index=True)
    for name in ("pre_scale_grows_after_warmup", "pre_scale_grows_more_than_peri"):
        assert result(name, both[both["dt"] == 0.1]) == result(name, runs[runs["dt"] == 0.1])


def test_a_mixed_verdict_says_how_many_comparisons_hold():
    rows = pre_peri([10.0, 11, 12], [2.0, 2.1, 2.2])
    rows = pd.concat([rows, pre_peri([10.0, 11, 1.9], [2.0, 2.1, 2.2], n_layer=16)], ignore_index=True)
    row = claims_table(rows).set_index("claim").loc["pre_above_peri_trained"]
    assert row["verdict"] == "mixed" and row["numbers"].startswith("5/6 comparisons hold")


def scale_rows(runs, at_step):
    """The scale table of ``runs``: top-of-stream mean|x| at probe steps 0..800, ``at_step(run, step)``."""
    keys = ["placement", "n_layer", "dt", "weight_decay", "lr", "seed", "init_scale", "fold_dt"]
    return table([{**{k: r[k] for k in keys}, "step": st, "top_mean_abs": at_step(r, st)}
                  for _, r in runs.iterrows() for st in range(0, 900, 100)])


def test_the_verdict_is_given_from_every_reference_step_after_warmup():
    # Pre-LN rises from 1.75 at the end of warmup to 4 at step 400 and ends at 2; Peri-LN stays flat
    def at_step(placement, seed, st):
        if placement == "peri":
            return 1.0 + 0.01 * seed
        return 2.0 + 0.05 * seed if st == 800 else 1.0 + 3.0 * min(st, 800 - st) / 400 + 0.05 * seed
    runs = table([run(p, seed=s, scale_warmup=at_step(p, s, 100), scale_final=at_step(p, s, 800))
                  for p in ("pre", "peri") for s in SEEDS])
    at_step_of_run = lambda r, st: at_step(r["placement"], r["seed"], st)  # noqa: E731
    ref = reference_table(runs, scale_rows(runs, at_step_of_run))
    pre = ref[ref["claim"] == "pre_scale_grows_after_warmup"].set_index("reference_step")
    assert list(pre.index) == [100, 200, 300, 400, 500, 600, 700]  # from the end of warmup, before the final
    assert pre["default"].tolist() == [True] + [False] * 6
    assert pre.loc[100, "verdict"] == "supported" and pre.loc[400, "verdict"] == "refuted"  # from its peak it fell
    # from the default reference step the table gives the claim's own verdict and effect
    claims = claims_table(runs, scale_rows(runs, at_step_of_run)).set_index("claim")
    own = claims.loc["pre_scale_grows_after_warmup"]
    assert (pre.loc[100, "verdict"], pre.loc[100, "effect"]) == (own["verdict"], own["effect"])
    assert "By reference step (claims_reference.csv): 100 supported, 200 " in own["numbers"]
    assert "400 refuted" in own["numbers"]


def test_a_study_config_is_read_over_config_yaml_as_snakemake_reads_it(tmp_path):
    from lnstab.study import load_study

    (tmp_path / "config.yaml").write_text("base: {model: {d_model: 32, n_head: 4}, train: {steps: 800}}\n"
                                          "sweeps: [{placement: [pre]}]\ninspect: {models: [a], roundtrip: {seed: 0}}\n")
    (tmp_path / "small.yaml").write_text("base: {model: {d_model: 16}}\nsweeps: [{placement: [peri]}]\n"
                                         "inspect: {roundtrip: null}\n")
    cfg, runs = load_study(tmp_path / "small.yaml")
    assert cfg["base"] == {"model": {"d_model": 16, "n_head": 4}, "train": {"steps": 800}}
    assert cfg["sweeps"] == [{"placement": ["peri"]}]  # a list is replaced, never merged
    assert cfg["inspect"] == {"models": ["a"], "roundtrip": None}
    assert load_study(tmp_path / "config.yaml")[0]["base"]["model"]["d_model"] == 32
