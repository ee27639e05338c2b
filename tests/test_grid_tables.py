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
    assert set(TABLES["probes"]) == {"csv"}
