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

import lnstab.figures
import lnstab.stats
from lnstab.config import ConfigError, check_batch_split, read_yaml
from lnstab.figures import FIGURE_CLAIMS, FIGURES, caption_claims
from lnstab.grid import expand as expand_grid, run_config
from lnstab.screen.setup import screen_config, screen_depths
from lnstab.pretrained.installed import (
    INSPECT_FILES as INSPECT_FILE_NAMES,
    inspection_names,
)
from lnstab.study import (
    CITED_STUDIES,
    SUMMARY_TABLES,
    check_folder_names,
    left_out,
    read_table,
    record_sources,
    roundtrip_run,
    study_groups,
)
from lnstab.tables import (
    COLLECTED,
    INSPECTION_TABLES,
    JUDGED,
    TABLES,
    data_file,
    table_files,
)

validate(config, "../schemas/config.schema.yaml")
config.setdefault("resources", {}).setdefault("train", {})
config.setdefault("screen", {})
config.setdefault("wasserstein", {})
config.setdefault("groups", {})
config.setdefault("inspect", {})
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
    for (
        _file
    ) in (
        workflow.configfiles
    ):  # Snakemake's YAML reader keeps the last of a repeated key
        read_yaml(open(_file, encoding="utf-8").read(), _file)
    check_folder_names(config)
    # the screen's depths and keys, before any job runs
    if config["screen"].get("enabled", True):
        screen_depths(screen_config(config["screen"]["base"]).model.n_layer)
    RUNS = expand_grid(config["sweeps"], BASE)
    for _params in RUNS.values():  # every run's config is checked before anything runs
        check_batch_split(run_config(_params, BASE).train, TRAIN_RESOURCES["processes"])
    # training jobs: groups of runs (lnstab.groups), or one run per job on several processes
    GROUPS = study_groups(config, RUNS, TRAIN_RESOURCES["processes"])
    # inspected checkpoints: output folder name -> model (folder or cached name); the run exported
    INSPECTED = inspection_names(config["inspect"]["models"])
    ROUNDTRIP = roundtrip_run(config["inspect"]["roundtrip"], RUNS, BASE)
    # none asked for, or none of this grid's runs matched (a note said so)
    if ROUNDTRIP is None:
        config["inspect"]["roundtrip"] = None
    # the corpus by content: the sha256 of every source file, rewritten only when one changes, is
    # the corpus stage's input (never modification times: cp -p or a restore keeps old ones); a
    # missing file stops the parse here, before anything is written
    CORPUS_SOURCES = str(
        record_sources(BASE.get("data", {}), f"{RESULTS}/data/sources.json")
    )
except ConfigError as e:
    raise WorkflowError(f"config error: {e}") from None


def check_executor_commands(workflow):
    """Stop before the first job when the executor's submit command is missing (the SLURM
    profile on a machine without SLURM's client tools)."""
    import shutil

    plugin = getattr(workflow.executor_plugin, "name", None)
    if plugin == "slurm" and shutil.which("sbatch") is None:
        raise WorkflowError(
            "the SLURM profile (executor: slurm) needs SLURM's sbatch on PATH, and there is none "
            "here: run on the cluster's login node, or leave out --workflow-profile profiles/slurm"
        )


def group_resources(runs):
    """A training job's resources: resources.train, with the runtime of `runs` runs one after another
    (a group trains them in less)."""
    return {**TRAIN_RESOURCES, "runtime": TRAIN_RESOURCES["runtime"] * runs}


RUN_DIR = f"{RESULTS}/runs/{{run}}"
LOGS = f"{RESULTS}/logs"
CONDA_ENV = "../../envs/environment.yaml"

# a study may leave the screen, the Wasserstein stage or the inspections out (screen.enabled,
# wasserstein.enabled: false; inspect: nothing): their tables and figures then are not targets
LEFT_OUT = left_out(config)
# what a figure is drawn with besides its tables: a change of either redraws it
FIGURE_STYLE = os.path.relpath(config["figure_style"] or lnstab.figures.STYLE)
FIGURE_CODE = [os.path.relpath(m.__file__) for m in (lnstab.figures, lnstab.stats)]
TABLE_FILES = table_files(RESULTS, [t for t in TABLES if t not in LEFT_OUT])
FIGURE_FILES = [
    f"{FIGDIR}/{f}.{ext}"
    for f in FIGURES
    if f not in LEFT_OUT
    for ext in ("png", "pdf")
]
SUMMARY_INPUTS = [t for t in SUMMARY_TABLES if t not in LEFT_OUT]
# every file a run leaves for the tables: targets of `all` and `tables` themselves, so a deleted or
# damaged one is rebuilt (from the run's checkpoint, or by training again) by the same command;
# as inputs of `collect` alone they would be intermediates that Snakemake lets go missing
TRAIN_OUTPUTS = [
    "summary.json",
    "provenance.json",
    "metrics.csv",
    "probes.csv",
    "bounds.csv",
]
TRAIN_FILES = expand(f"{RUN_DIR}/{{name}}", run=RUNS, name=TRAIN_OUTPUTS)
RUN_OUTPUTS = TRAIN_OUTPUTS + (
    ["wasserstein.csv"] if config["wasserstein"]["enabled"] else []
)
RUN_FILES = expand(f"{RUN_DIR}/{{name}}", run=RUNS, name=RUN_OUTPUTS)


def claims_caption(figure):
    """A params function: the verdicts and numbers of the claims ``figure`` shows, for its report
    caption (``{{ snakemake.params.claims }}``); '' before claims.csv exists (a dry run).
    """

    def text(wildcards, input):
        path = input.get("claims")
        return (
            caption_claims(read_table(path), figure)
            if path and os.path.exists(path)
            else ""
        )

    return text


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


def inspected_config(wc):
    """A model folder's config.json is the inspect job's input (a cached name is not tracked)."""
    model = INSPECTED[wc.name]
    return [os.path.join(model, "config.json")] if os.path.isdir(model) else []
