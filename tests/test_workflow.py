"""The Snakemake workflow: config checks at parse time, lint, environments, and the smoke study
end to end (every declared output, a diverged run that does not stop the DAG, claims verdicts,
byte-stable tables and figures, the HTML report)."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ROOT, smoke_config, snakemake


def test_lint_is_clean():
    res = snakemake("--lint")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Congratulations" in res.stdout + res.stderr


@pytest.mark.parametrize("change, key", [
    ({"sweeps": [{"placement": ["middle"]}]}, "middle"),
    ({"sweeps": [{"depth": [3]}]}, "depth"),
    ({"sweeps": [{"dt": [0]}]}, "dt"),
    ({"base": {"model": {"n_hed": 2}}}, "model.n_hed"),
    ({"base": {"train": {"lr": "fast"}}}, "train.lr"),
    ({"resources": {"train": {"gpus": 1}}}, "gpus"),
    ({"sweeps": [{"dt": ["abc"]}]}, "sweeps[0].dt: expected numbers"),
    ({"screen": {"enabled": True, "base": {"model": {"n_layer": 2}}}}, "model.n_layer"),
    ({"screen": {"enabled": True, "base": {"train": {"lr": 0.1}}}}, "train.lr"),
    ({"groups": {"max_runs": 0}}, "max_runs"),
    ({"results": "r" * 300}, "results: the folder name rrrr"),
])
def test_bad_config_fails_at_parse_time_naming_the_key(tmp_path, change, key):
    res = snakemake("-n", "--configfile", str(smoke_config(tmp_path, **change)))
    assert res.returncode != 0
    assert key in res.stdout + res.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("study", ["smoke", "extended", "tuning", "gpu", "paper", "paper_xl"])
def test_every_study_builds_its_dag_or_names_its_missing_corpus(study):
    """A --configfile inherits config/config.yaml's keys: each study's DAG builds; one whose corpus
    is not here (the paper studies before their data are staged: `lnstab plan` shows their jobs)
    stops at parse with one line naming the key and the pattern, and writes nothing."""
    cfg = yaml.safe_load((ROOT / "config" / f"{study}.yaml").read_text())
    sources = ROOT / cfg["results"] / "data" / "sources.json"
    before = sources.read_bytes() if sources.exists() else None
    res = snakemake("all", "-n", "--configfile", f"config/{study}.yaml")
    missing = [p for p in cfg.get("base", {}).get("data", {}).get("paths", []) if not list(ROOT.glob(p))]
    if not missing:
        assert res.returncode == 0, res.stderr[-3000:]
        return
    assert res.returncode != 0 and "Traceback" not in res.stdout + res.stderr
    assert f"config error: data.paths: no file matches {missing[0]!r}" in res.stdout + res.stderr
    assert (sources.read_bytes() if sources.exists() else None) == before


def test_a_missing_corpus_file_stops_the_parse_before_anything_is_written(tmp_path):
    absent = tmp_path / "corpus" / "absent.txt"
    res = snakemake("-n", "--configfile", str(smoke_config(tmp_path, base={"data": {"source": "text",
                                                                                    "paths": [str(absent)]}})))
    assert res.returncode != 0 and "Traceback" not in res.stdout + res.stderr
    assert f"config error: data.paths: no such corpus file: {absent}" in res.stdout + res.stderr
    assert not (tmp_path / "results").exists()


def test_one_corpus_file_given_as_a_string_builds_its_dag(tmp_path):
    """data.paths: README.md (a string where a list is expected) is read as one file, as the run
    config reads it, not as the characters of its name."""
    cfg = smoke_config(tmp_path, base={"data": {"source": "text", "paths": str(ROOT / "README.md")}})
    res = snakemake("-n", "--configfile", str(cfg))
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-3000:]


def test_a_study_of_another_grid_builds_without_the_default_round_trip(tmp_path):
    """A user's own --configfile inherits config/config.yaml's inspect.roundtrip, which picks no
    run of a grid without its 16-block Pre-LN run: a note says there is no round trip, and the DAG
    builds (it used to stop until the study added inspect: {roundtrip: null})."""
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"results": str(tmp_path / "results"), "figures": str(tmp_path / "figures"),
                                     "sweeps": [{"placement": ["peri"], "n_layer": [2], "dt": [1.0]}]}))
    res = snakemake("-n", "--configfile", str(study))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "picks no run of this study's grid" in res.stdout + res.stderr
    assert "inspect_export" not in res.stdout


def test_default_config_builds_its_dag():
    res = snakemake("all", "-n", "--quiet")
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    depths = sorted({d for s in cfg["sweeps"] for d in s["n_layer"]})
    assert len(depths) >= 3 and max(depths) >= 16
    assert {0.0, 0.1} <= {w for s in cfg["sweeps"] for w in s.get("weight_decay", [])}
    assert {1.0, 0.1} <= {d for s in cfg["sweeps"] for d in s.get("dt", [])}
    # Post-LN at a stable learning rate and at one where it collapses, the latter declared
    post_lrs = {(lr, "demo" in s) for s in cfg["sweeps"] if s["placement"] == ["post"] for lr in s["lr"]}
    assert len({lr for lr, _ in post_lrs}) == 2 and {demo for _, demo in post_lrs} == {True, False}


def test_conda_environment_names_the_pip_requirements():
    def lines(path):
        return {l.strip() for l in path.read_text().splitlines() if l.strip() and not l.startswith("#")}

    pip = set(yaml.safe_load((ROOT / "envs" / "environment.yaml").read_text())["dependencies"][-1]["pip"])
    assert pip == lines(ROOT / "envs" / "requirements.txt")
    nodeps = lines(ROOT / "envs" / "requirements-nodeps.txt")
    post = (ROOT / "envs" / "environment.post-deploy.sh").read_text()
    assert all(f'"{r}"' in post for r in nodeps)


def test_the_lock_pins_every_requirement_within_its_range():
    """make setup installs envs/requirements.lock with --no-deps: it must hold every package of
    the requirements, each at one version inside the requirement's range."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lock, hashed, pin = {}, set(), None
    for line in (ROOT / "envs" / "requirements.lock").read_text().splitlines():
        if line.startswith("    --hash=sha256:") and len(line.split(":")[1].rstrip(" \\")) == 64:
            hashed.add(pin)  # the sha256 of the pin above it
        elif line and not line.startswith("#"):
            name, version = line.rstrip(" \\").split("==")
            pin = canonicalize_name(name)
            lock[pin] = version
    assert hashed == set(lock), f"pins without a sha256: {sorted(set(lock) - hashed)}"
    for path in ("requirements.txt", "requirements-nodeps.txt"):
        for line in (ROOT / "envs" / path).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                req = Requirement(line)
                name = canonicalize_name(req.name)
                assert name in lock, f"{req.name} of envs/{path} is not in envs/requirements.lock"
                assert req.specifier.contains(lock[name].split("+")[0], prereleases=True), (req, lock[name])


def test_profiles():
    default = yaml.safe_load((ROOT / "profiles" / "default" / "config.yaml").read_text())
    slurm = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    assert "executor" not in default  # the default profile is loaded by every run: local only
    assert slurm["executor"] == "slurm"
    # one source of truth for the training jobs' resources: the study config, never the profile
    assert "set-resources" not in slurm and "set-threads" not in slurm


def test_the_slurm_profile_without_sbatch_stops_once_with_one_line(tmp_path):
    """On a machine without SLURM's client tools the profile stops before the first job, naming
    sbatch (not once per job, naming sacct)."""
    bin_dir = tmp_path / "bin"  # a PATH with the basic tools but no SLURM command
    bin_dir.mkdir()
    for tool in ("which", "bash", "sh", "env", "uname", "cat", "ls", "mkdir", "rm", "git", "nproc"):
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{bin_dir}"}
    res = subprocess.run([sys.executable, "-m", "snakemake", "--workflow-profile", "profiles/slurm",
                          "--configfile", str(smoke_config(tmp_path))], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "Traceback" not in out, out[-3000:]
    assert out.count("needs SLURM's sbatch on PATH") == 1 and "sacct" not in out
    assert not (tmp_path / "results" / "runs").exists()  # no job ran


@pytest.mark.parametrize("profile", ["profiles/default", "profiles/slurm"])
def test_training_resources_come_from_the_study_config(tmp_path, profile):
    cfg = smoke_config(tmp_path, resources={"train": {"mem_mb": 1234, "runtime": 17, "gpu": 0, "cpus_per_task": 1}})
    res = snakemake("-n", "--workflow-profile", profile, "--configfile", str(cfg))
    assert res.returncode == 0, res.stderr[-3000:]
    rule, jobs = None, []
    for line in res.stdout.splitlines():
        if re.match(r"^(local)?rule [\w.-]+:", line):
            rule = line.split()[-1].rstrip(":")
        elif "output:" in line and rule.startswith("train_"):
            runs = len({Path(f.strip()).parent for f in line.split("output:")[1].split(",")})
        elif "resources:" in line and rule.startswith("train_"):
            jobs.append((line, runs))
    # a training group's job: the study's memory, and its runtime per run times its runs
    assert jobs and all("mem_mb=1234" in j and f"runtime={17 * n}," in j + "," for j, n in jobs), jobs[:2]
    assert any(n > 1 for _, n in jobs)


@pytest.mark.slow
def test_smoke_workflow_end_to_end(smoke_local):
    tmp_path, cfg_path = smoke_local
    results, figures = tmp_path / "results", tmp_path / "figures"

    # every declared output of the default target exists
    targets = re.findall(r"^\s+input: (.*)$", snakemake("all", "-n", "-f", "--configfile", str(cfg_path)).stdout, re.M)
    declared = [Path(p.strip()) for p in targets[-1].split(",")]
    assert len(declared) > 20
    for path in declared:
        assert path.exists() and path.stat().st_size > 0, path

    runs = pd.read_csv(results / "tables" / "runs.csv")
    cfg = yaml.safe_load(cfg_path.read_text())
    assert len(runs) == sum(len(s.get("placement", [1])) * len(s.get("n_layer", [1])) * len(s.get("dt", [1]))
                            * len(s.get("weight_decay", [1])) * len(s.get("lr", [1])) for s in cfg["sweeps"])
    # the diverged run is a row of the tables, and did not stop the DAG
    diverged = runs[runs["status"] == "diverged"]
    assert len(diverged) == 1 and diverged["placement"].item() == "none"
    assert (runs["status"] == "completed").sum() == len(runs) - 1
    assert runs["violations"].sum() == 0

    # 20 steps teach nothing: no run learned, so every claim about trained models is untested,
    # and the bound checks (which hold for any weights) are counted and pass
    from lnstab.claims import CLAIMS
    from lnstab.figures import FIGURES
    from lnstab.tables import TABLES

    assert not runs["learned"].any()
    # Post-LN's forward rows restate LN's normalisation: never counted; its checks are the exact
    # adjoint inequalities at the final probe (2L steps and the whole flow); every other run has more
    post = runs["placement"] == "post"
    assert (runs.loc[post, "bound_checks"] == 2 * runs.loc[post, "n_layer"] + 1).all()
    assert (runs.loc[~post, "bound_checks"] > 2 * runs.loc[~post, "n_layer"] + 1).all()
    claims = pd.read_csv(results / "tables" / "claims.csv").set_index("claim")
    assert list(claims.index) == list(CLAIMS)
    assert set(claims["verdict"]) == {"untested"}
    checks = pd.read_csv(results / "tables" / "software_checks.csv").set_index("check")
    assert checks.loc["zero_bound_violations", "result"] == "pass"
    # the declared demonstration is its own table, and a diverged run did not demonstrate a collapse
    demos = pd.read_csv(results / "tables" / "demonstrations.csv")
    assert list(demos["placement"]) == ["none"] and not demos["demonstrated"].any()
    # the exact adjoint inequalities were checked at the final probe of every completed run
    bounds = pd.read_csv(results / "tables" / "bounds.csv.gz")
    adj = bounds[bounds["quantity"] == "adjoint_step"]
    assert set(adj["kind"]) == {"check"} and not adj["violation"].any()
    assert adj.groupby(["placement", "n_layer", "dt", "weight_decay"]).ngroups == (runs["status"] == "completed").sum()
    for name, formats in TABLES.items():
        if "md" in formats:
            text = (results / "tables" / f"{name}.md").read_text()
            assert text.startswith("|") and "nan" not in text, name
        if "tex" in formats:
            assert "\\begin{tabular}" in (results / "tables" / f"{name}.tex").read_text()
    for fig in FIGURES:
        if fig == "fig10_real_models":  # the smoke study measures no real model: left out
            assert not (figures / f"{fig}.png").exists()
            continue
        assert (figures / f"{fig}.png").read_bytes()[:4] == b"\x89PNG"
        assert (figures / f"{fig}.pdf").read_bytes()[:4] == b"%PDF"
    # the round trip: a Pre-LN run exported to transformers' GPT-2 and inspected equals its final probe
    (export,) = (results / "inspect").glob("export-*")
    record = json.loads((export / "roundtrip.json").read_text())
    assert record["probes"]["missing"] == 0 and record["probes"]["max_abs_diff"] == 0.0
    assert record["bounds"]["rows"] > 0 and record["bounds"]["max_abs_diff"] == 0.0
    models = pd.read_csv(results / "tables" / "inspected_models.csv")
    assert list(models["name"]) == [export.name] and models["bound_violations"].item() == 0
    assert models["roundtrip_max_abs_diff"].item() == 0 and "## Inspected checkpoints" in (results / "summary.md").read_text()
    baselines = pd.read_csv(results / "tables" / "baselines.csv")
    assert baselines["bigram_nats"].item() < baselines["unigram_nats"].item()
    assert "bigram" in (results / "summary.md").read_text()
    # a job's log exists for every rule: one per training group, which each run's provenance names
    groups = {json.loads((run / "provenance.json").read_text())["segments"][-1]["group"]["name"]
              for run in (results / "runs").iterdir()}
    assert {p.stem for p in (results / "logs" / "train").glob("*.log")} == groups and len(groups) < len(runs)

    # tables and figures regenerate byte-identically from the runs (no retraining)
    manifest = results / "manifest.sha256"
    before = manifest.read_text()
    res = snakemake("all", "--cores", "2", "--forcerun", "collect", "--configfile", str(cfg_path))
    assert res.returncode == 0, res.stderr[-3000:]
    assert manifest.read_text() == before
    from lnstab.study import check_manifest

    assert check_manifest(manifest) == []

    # the HTML report (snakemake[reports]): the summary shown in it, no docutils message anywhere;
    # it builds from what a clone has (tables, figures, summary: no run folder)
    import shutil
    import zipfile

    shutil.move(results / "runs", tmp_path / "runs-aside")
    res = snakemake("--configfile", str(cfg_path), "--report", str(tmp_path / "report.zip"))
    assert res.returncode == 0, res.stderr[-3000:]
    with zipfile.ZipFile(tmp_path / "report.zip") as z:
        text = "\n".join(z.read(n).decode("utf-8", "replace") for n in z.namelist() if n.endswith((".html", ".js")))
    assert "System Message" not in text and "Runs that learned" in text
    assert "This study's verdicts" in text  # the figures' captions carry their claims' numbers


def test_workflow_files_are_snakefmt_clean():
    import shutil
    import subprocess
    import sys

    exe = shutil.which("snakefmt", path=str(Path(sys.executable).parent)) or shutil.which("snakefmt")
    assert exe, "snakefmt is installed by envs/requirements.txt"
    res = subprocess.run([exe, "--check", "Snakefile", "workflow/"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_citation_names_the_papers_seven_authors_and_the_catalog_claims_no_untested_conda():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    names = [f"{a['given-names']} {a['family-names']}" for a in cff["preferred-citation"]["authors"]]
    assert names == ["Kelvin Kan", "Xingjian Li", "Benjamin J. Zhang", "Tuhin Sahai", "Stanley Osher",
                     "Krishna Kumar", "Markos A. Katsoulakis"]  # arXiv:2510.09904's author list, in its order
    catalog = yaml.safe_load((ROOT / ".snakemake-workflow-catalog.yml").read_text())
    assert catalog["usage"]["software-stack-deployment"]["conda"] is False
