"""Numbers quoted in docs/ that come from the committed tables or from the code: each equals
what the table or the function gives, at the digits the page prints."""
import json
import re

import pandas as pd
import pytest
import torch

from conftest import ROOT

from lnstab.bounds import CERTIFICATE_FAILURE, lanczos_margin, roundoff_allowance
from lnstab.config import ProbeConfig

TABLES = ROOT / "results" / "tables"


def page(name: str) -> str:
    return " ".join((ROOT / "docs" / name).read_text().split())  # line breaks as spaces


def test_rounding_allowances_in_bounds_md_are_the_functions():
    text = page("bounds.md")
    default, xl = (float(x) for x in re.search(
        r"\(d 32, T 32, K 32\) a = ([\d.e-]+); at GPT-2 XL's \(d 1,600, T 1,024, K 96\) a = ([\d.e-]+)\.", text).groups())
    f32 = float(re.search(r"u = 2\^-24 gives ([\d.]+) at the default size", text).group(1))
    assert default == pytest.approx(roundoff_allowance(32, 32, 32), rel=0.05)
    assert xl == pytest.approx(roundoff_allowance(96, 1600, 1024), rel=0.05)
    assert f32 == pytest.approx(roundoff_allowance(32, 32, 32, torch.float32), rel=0.05)


def test_lanczos_certificate_margins_in_bounds_md_are_the_functions():
    text = page("bounds.md")
    m = re.search(r"Setting that to `([\de-]+)` \(`lnstab.bounds.CERTIFICATE_FAILURE`\) gives `eps` = ([\d.]+) at "
                  r"`n = 4096` and ([\d.]+) at `n = 8192`, and the row's bound is `sqrt\(theta / \(1 - eps\)\)`: "
                  r"at most ([\d.]+)% above", text)
    failure, at4096, at8192, percent = (float(x) for x in m.groups())
    products = ProbeConfig().adjoint_lanczos_products
    assert failure == CERTIFICATE_FAILURE and f"`m = probe.adjoint_lanczos_products` ({products})" in text
    assert at4096 == round(lanczos_margin(4096, products), 4) and at8192 == round(lanczos_margin(8192, products), 4)
    assert percent == round(100 * ((1 - lanczos_margin(8192, products)) ** -0.5 - 1), 2)


def test_exact_adjoint_tightness_in_bounds_md_is_the_default_studys():
    b = pd.read_csv(TABLES / "bounds.csv.gz")
    rows = b[(b["quantity"] == "adjoint_step") & (b["kind"] == "check") & (b["n_layer"] == b["n_layer"].max())]
    quoted = re.findall(r"([\d.]+) on (Peri|Pre|Post)-LN \(median ([\d.]+)\)", page("bounds.md"))
    assert {p for _, p, _ in quoted} == {"Peri", "Pre", "Post"}
    for top, placement, median in quoted:
        r = rows[rows["placement"] == placement.lower()]["ratio"]
        assert (float(top), float(median)) == (round(r.max(), 2), round(r.median(), 2)), placement


def test_learned_runs_data_over_entry_range_in_screen_md_is_the_default_studys():
    runs = pd.read_csv(TABLES / "runs.csv")
    learned = runs[(runs["role"] == "study") & runs["learned"].astype(bool)]
    ratio = learned["top_var_data"] / learned["top_var_entry"]
    lo, hi = re.search(r"its learned study runs at ([\d.]+)-([\d.]+)", page("screen.md")).groups()
    assert (float(lo), float(hi)) == (round(ratio.min(), 2), round(ratio.max(), 2))


def test_dt_ablation_losses_in_theory_md_are_the_default_studys():
    t = pd.read_csv(TABLES / "dt_ablation.csv")
    t = t[t["n_layer"] == t["n_layer"].max()]
    text = page("theory.md")
    for name, placement in (("Pre", "pre"), ("Peri", "peri")):
        step, folded = (float(x) for x in re.search(
            name + r"-LN(?:'s final validation loss is|'s) ([\d.]+) at dt 0.1 against ([\d.]+) folded", text).groups())
        r = t[(t["placement"] == placement) & (t["dt"] == 0.1)].set_index("fold_dt")["val_loss_mean"]
        assert (step, folded) == (round(r[False], 3), round(r[True], 3)), placement


def test_default_study_time_in_the_readme_is_the_measured_one():
    """The README's headline time and its comparison are benchmarks/breakdown.json's (measured by
    benchmarks/breakdown.py from the two studies' Snakemake logs), and the study measured is the
    committed one."""
    kept = json.loads((ROOT / "benchmarks" / "breakdown.json").read_text())
    after, before = kept["after"], kept["before"]
    readme = (ROOT / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| Snakemake part of `make workflow`"))
    ratio = after["makespan"] / before["makespan"]
    per_run = ratio * before["training"]["runs"] / after["training"]["runs"]
    for quoted in (f"{after['training']['runs']} runs", f"{after['makespan'] / 60:.1f} min from a fresh clone",
                   f"took {before['makespan'] / 60:.1f} min", f"{ratio:.2f} of the time",
                   f"{per_run:.2f} of the time per run"):
        assert quoted in row, quoted
    study_row = next(line for line in readme.splitlines() if line.startswith("| `config/config.yaml` (default"))
    assert f"{after['makespan'] / 60:.1f} min on an AMD EPYC" in study_row
    assert len(pd.read_csv(TABLES / "runs.csv")) == after["training"]["runs"]
