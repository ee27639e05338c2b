"""lnstab compare: a study against itself, against a copy whose numbers moved as another CPU moves
them (same conclusions), and against copies whose conclusions or structure differ."""
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from conftest import ROOT


def compare(*args):
    return subprocess.run([sys.executable, "-m", "lnstab", "compare", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


@pytest.fixture
def copy(tmp_path):
    shutil.copytree(ROOT / "results" / "tables", tmp_path / "tables")
    return tmp_path / "tables"


def test_a_study_against_itself_is_equal_everywhere(copy):
    res = compare(ROOT / "results", copy)
    assert res.returncode == 0 and "SAME CONCLUSIONS" in res.stdout, res.stdout[-2000:] + res.stderr
    table_lines = [line for line in res.stdout.splitlines() if " rows, " in line]
    assert len(table_lines) > 20 and all(line.endswith(", equal") for line in table_lines), table_lines


def test_numbers_moved_in_their_last_bits_keep_the_conclusions_and_are_reported(copy):
    runs = pd.read_csv(copy / "runs.csv")
    runs["final_val_loss"] *= 1 + 3e-7  # what another CPU's kernels do to the last digits
    runs.to_csv(copy / "runs.csv", index=False)
    res = compare(ROOT / "results", copy)
    assert res.returncode == 0 and (f"runs.csv: {len(runs)} rows, numbers within 3e-07 relative (largest in "
                                    "'final_val_loss')") in res.stdout, res.stdout[-2000:]
    strict = compare(ROOT / "results", copy, "--rtol", "1e-9")
    assert strict.returncode == 1 and "above --rtol" in strict.stdout


@pytest.mark.parametrize("edit, needle", [
    ("verdict", "verdict supported against refuted"),
    ("status", "column 'status', row 2: 'completed' against 'diverged'"),
    ("row", "shape differs"),
    ("nan", "missing on one side only"),
])
def test_a_different_conclusion_or_structure_is_named_and_fails(copy, edit, needle):
    name = "claims.csv" if edit == "verdict" else "runs.csv"
    df = pd.read_csv(copy / name)
    if edit == "verdict":
        df.loc[df["verdict"] == "supported", "verdict"] = "refuted"
    elif edit == "status":
        df.loc[0, "status"] = "diverged"
    elif edit == "row":
        df = df.iloc[:-1]
    else:
        df.loc[0, "final_val_loss"] = float("nan")
    df.to_csv(copy / name, index=False)
    res = compare(ROOT / "results", copy)
    assert res.returncode == 1 and needle in res.stdout and "DIFFERENT" in res.stdout, res.stdout[-3000:]


def test_the_committed_study_against_git_head(tmp_path):
    changed = subprocess.run(["git", "status", "--porcelain", "results/tables"], capture_output=True, text=True,
                             cwd=ROOT).stdout
    if changed.strip():
        pytest.skip("results/tables differs from HEAD in this checkout")
    res = compare("results", "git:HEAD")
    assert res.returncode == 0 and "SAME CONCLUSIONS: results against git:HEAD" in res.stdout, res.stdout[-2000:]
    bad = compare("results", "git:no-such-ref")
    assert bad.returncode == 2 and "git:no-such-ref" in bad.stderr
