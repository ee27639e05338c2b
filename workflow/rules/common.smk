# Shared by all stages: the validated config, the grid of runs, the output paths, helpers.
import os
import re
import sys

from snakemake.utils import validate

# lnstab from this checkout, for the Snakefile and for every job: jobs inherit this environment
# (local jobs directly, SLURM jobs through sbatch's default --export=ALL), so conda environments
# need no copy of the package and no other installed copy is ever used
_SRC = os.path.join(workflow.basedir, "src")
sys.path.insert(0, _SRC)
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (_SRC, os.environ.get("PYTHONPATH")) if p)
)

from lnstab.config import ConfigError
from lnstab.data import text_files
from lnstab.figures import FIGURES
from lnstab.grid import expand as expand_grid, run_config
from lnstab.study import CITED_STUDIES, SUMMARY_TABLES
from lnstab.tables import COLLECTED, JUDGED, TABLES, table_files

validate(config, "../schemas/config.schema.yaml")
config.setdefault("resources", {}).setdefault("train", {})
config.setdefault("screen", {})
config.setdefault("wasserstein", {})
validate(config, "../schemas/config.schema.yaml")  # second pass fills nested defaults

RESULTS = config["results"].rstrip("/")
FIGDIR = config["figures"].rstrip("/")
BASE = config["base"]

# a training job: `processes` torchrun ranks (one per GPU), base.train.threads threads each
TRAIN_RESOURCES = config["resources"]["train"]
TRAIN_RESOURCES.setdefault("processes", max(1, TRAIN_RESOURCES["gpu"]))
TRAIN_THREADS = TRAIN_RESOURCES["processes"] * BASE.get("train", {}).get("threads", 1)
TRAIN_RESOURCES.setdefault("cpus_per_task", TRAIN_THREADS)

try:
    RUNS = expand_grid(config["sweeps"], BASE)
    for _params in RUNS.values():  # every run's config is checked before anything runs
        run_config(_params, BASE)
except ConfigError as e:
    raise WorkflowError(f"config error: {e}") from None

RUN_DIR = f"{RESULTS}/runs/{{run}}"
LOGS = f"{RESULTS}/logs"
CONDA_ENV = "../../envs/environment.yaml"

# a study may leave the screen or the Wasserstein stage out (screen.enabled, wasserstein.enabled:
# false): their tables and figures then are not targets
LEFT_OUT = (
    ()
    if config["screen"]["enabled"]
    else ("screen_verdicts", "screen_sublayers", "fig7_screen")
) + (() if config["wasserstein"]["enabled"] else ("wasserstein", "fig8_wasserstein"))
TABLE_FILES = table_files(RESULTS, [t for t in TABLES if t not in LEFT_OUT])
FIGURE_FILES = [
    f"{FIGDIR}/{f}.{ext}"
    for f in FIGURES
    if f not in LEFT_OUT
    for ext in ("png", "pdf")
]
SUMMARY_INPUTS = [t for t in SUMMARY_TABLES if t not in LEFT_OUT]


def run_labels(params):
    """Report labels of one run: what a reader filters by."""
    return {
        "placement": params["placement"],
        "depth": params["n_layer"],
        "dt": params["dt"],
        "weight decay": params["weight_decay"],
        "lr": params["lr"],
        "seed": params["seed"],
    }


def table_outputs(name):
    """Every file of one table (lnstab.tables.TABLES); the CSV flagged for the HTML report."""
    stem = f"{RESULTS}/tables/{name}"
    out = {ext: f"{stem}.{ext}" for ext in TABLES[name]}
    out["csv"] = report(
        out["csv"],
        caption=f"../report/table_{name}.rst",
        category="Tables",
        labels={"table": name},
    )
    return out


def corpus_files(wildcards):
    """The data a study trains on: its files are inputs, so a changed corpus reruns the corpus
    stage, and through meta.json (its content hash) every training run."""
    data = BASE.get("data", {})
    if data.get("source") == "text":  # files or glob patterns (lnstab.data.text_files)
        return [str(p) for p in text_files(data.get("paths", []))]
    if data.get("source") == "bin":
        return [os.path.join(data["dir"], f"{split}.bin") for split in ("train", "val")]
    return []
