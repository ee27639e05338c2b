"""The grid (sweeps, roles, run ids, configs passed as data) and table writing."""
import pandas as pd
import pytest

from lnstab.config import ConfigError
from lnstab.grid import expand, run_config, run_id
from lnstab.tables import TABLES, table_files, write_table


def test_sweeps_expand_to_the_union_with_roles():
    runs = expand([{"placement": ["pre", "peri"], "n_layer": [2, 4]},
                   {"demo": "too high a learning rate", "placement": ["post"], "lr": [0.1]}],
                  {"train": {"lr": 0.01}})
    assert len(runs) == 5
    roles = {r: p["role"] for r, p in runs.items()}
    assert roles["post-L4-dt1-wd0.1-lr0.1-s0"] == "instability_demo"
    assert sum(role == "study" for role in roles.values()) == 4
    assert all(run_id(p) == r for r, p in runs.items())


def test_init_scale_and_fold_dt_are_grid_keys_named_only_off_their_defaults():
    runs = expand([{"placement": ["peri"], "dt": [0.1], "fold_dt": [False, True], "init_scale": [1.0, 0.1]}])
    assert sorted(runs) == ["peri-L4-dt0.1-wd0.1-lr0.001-s0", "peri-L4-dt0.1-wd0.1-lr0.001-s0-fold",
                            "peri-L4-dt0.1-wd0.1-lr0.001-s0-i0.1", "peri-L4-dt0.1-wd0.1-lr0.001-s0-i0.1-fold"]
    cfg = run_config(runs["peri-L4-dt0.1-wd0.1-lr0.001-s0-i0.1-fold"])
    assert (cfg.model.fold_dt, cfg.model.last_map_init_scale, cfg.model.dt) == (True, 0.1, 0.1)
    with pytest.raises(ConfigError, match="fold_dt"):
        expand([{"fold_dt": ["yes"]}])


def test_a_run_in_two_roles_or_two_points_under_one_id_is_an_error():
    with pytest.raises(ConfigError, match=r"sweeps\[0\] and sweeps\[1\].*demonstration or a study run"):
        expand([{"placement": ["post"]}, {"demo": "too high", "placement": ["post"]}])
    with pytest.raises(ConfigError, match=r"sweeps\[0\] and sweeps\[2\].*share the run id"):
        expand([{"dt": [0.1]}, {"placement": ["peri"]}, {"dt": [0.1000001]}])


def test_unknown_grid_key_is_named():
    with pytest.raises(ConfigError, match="depth"):
        expand([{"depth": [3]}])


def test_run_config_takes_values_as_data():
    # a path that a "key=value" string would have cut at " #" or ": "
    path = "results #1/data: v2"
    cfg = run_config({"placement": "peri", "n_layer": 3, "dt": 0.5, "weight_decay": 0.0, "lr": 0.02, "seed": 7,
                      "role": "study"}, {"model": {"d_model": 16, "n_head": 2}},
                     {"data": {"source": "bin", "dir": path}, "model": {"vocab_size": 100}})
    assert cfg.data.dir == path and cfg.model.vocab_size == 100
    assert (cfg.model.placement, cfg.model.n_layer, cfg.model.dt, cfg.train.weight_decay, cfg.train.lr, cfg.seed) == \
        ("peri", 3, 0.5, 0.0, 0.02, 7)


def test_tables_are_written_in_their_formats(tmp_path):
    df = pd.DataFrame({"claim": ["a", "b"], "verdict": ["supported", "untested"], "holds": [1, 0],
                       "checked": [1, 0], "numbers": ["x" * 300, float("nan")]})
    paths = write_table(df, tmp_path / "claims")
    assert [p.suffix for p in paths] == [".csv", ".md", ".tex"]
    md, tex = (tmp_path / "claims.md").read_text(), (tmp_path / "claims.tex").read_text()
    assert "numbers" not in md and "x" * 300 not in tex  # long cells stay in the CSV
    assert "nan" not in md and "nan" not in tex
    assert pd.read_csv(tmp_path / "claims.csv")["numbers"].iloc[0] == "x" * 300
    assert table_files("r", ["claims"]) == ["r/tables/claims.csv", "r/tables/claims.md", "r/tables/claims.tex"]
    assert set(TABLES["probes"]) == {"csv.gz"}
    # a long table: gzipped CSV whose bytes depend on its rows only (no time stamp or name inside)
    import gzip

    first = write_table(df, tmp_path / "a" / "probes")[0].read_bytes()
    second = write_table(df, tmp_path / "b" / "probes")[0].read_bytes()
    assert first == second and gzip.decompress(first).decode() == (tmp_path / "claims.csv").read_text()


def test_summary_page_has_baselines_losses_claims_and_the_caveat():
    from test_claims import run

    from lnstab.claims import claims_table, demonstrations_table, software_checks_table
    from lnstab.stats import dt_ablation_table, loss_table
    from lnstab.summary import summary_markdown

    runs = pd.DataFrame([run("pre", seed=s, scale_final=9.0 + s) for s in (0, 1)] + [run("peri", seed=s) for s in (0, 1)]
                        + [run("post", lr=0.01, role="instability_demo", learned=False, adjoint_ratio=1e-9,
                               top_var_data=1e-12)])
    tables = {"runs": runs, "losses": loss_table(runs), "claims": claims_table(runs),
              "demonstrations": demonstrations_table(runs), "software_checks": software_checks_table(runs),
              "dt_ablation": dt_ablation_table(runs),
              "baselines": pd.DataFrame([{"corpus": "shakespeare", "tokenizer": "char", "tokens": 10,
                                          "unigram_nats": 3.3, "bigram_nats": 2.5}])}
    tables["screen_verdicts"] = pd.DataFrame([
        {"architecture": a, "role": r, "state": st, "forward": f"fwd-{a}-{st}", "backward": "uniform",
         "depth_exponent": 0.5, "step_factor": 1.01, "adjoint_step_factor": 1.1, "weight_homogeneity": 1.0,
         "best_lr": 0.01, "final_val_loss": 2.0, "learned": st == "trained", "per_lr": f"lr 0.01: fwd-{a}"}
        for a, r in (("output+rmsnorm", "candidate"), ("pre", "reference")) for st in ("init", "trained")])
    tables["wasserstein"] = pd.DataFrame([
        {"placement": "pre", "n_layer": 4, "dt": 1.0, "weight_decay": 0.1, "learned": True, "noise_scale": n,
         "ratio": rt, "rms_gain": 1.75, "worst_gain": 77.0} for n, rt in ((0.1, 1.5), (1.0, 2.5), (float("nan"), 9.25))])
    text = summary_markdown(tables, {"base": {"model": {"d_model": 32}}}, "../figures")
    for needle in ("2.5000", "3.3000", "2.000 ± 0.000", "pre_above_peri_trained", "supported",
                   "not the paper's theorems", "(../figures/fig1_moments.png)", "fwd-output+rmsnorm-trained",
                   "|                       2 |                 9.25 |                                   1.75 |",
                   "1 of 1 runs showed what they were declared to", "zero_bound_violations | pass",
                   "lr 0.01: fwd-pre"):
        assert needle in text, needle
    assert "fwd-pre-init" not in text  # the page shows the verdicts after training
    # a claim the grid cannot test is listed with a study that would decide it, never this one
    assert "- `wd_limits_pre`: untested (effect  [, ] over 0 seed(s); 0/0 comparisons). Deciding it needs " \
        "config/extended.yaml" in text
    extended = summary_markdown(tables, {"results": "results/extended"}, "figures")
    assert "- `wd_limits_pre`: untested (effect  [, ] over 0 seed(s); 0/0 comparisons). Deciding it needs " \
        "config/gpu.yaml" in extended


def test_table_figure_and_manifest_jobs_do_not_load_torch():
    import subprocess
    import sys

    code = ("import sys, lnstab.study, lnstab.collect, lnstab.figures, lnstab.claims, lnstab.summary; "
            "assert 'torch' not in sys.modules, 'torch'; assert 'matplotlib' not in sys.modules, 'matplotlib'")
    subprocess.run([sys.executable, "-c", code], check=True)
