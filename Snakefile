# lnstab: LayerNorm placement x depth x residual step dt, from training to every figure and table.
#   snakemake --cores all                                    the default study (config/config.yaml)
#   snakemake --cores all --configfile config/smoke.yaml     the CI smoke study
#   snakemake --workflow-profile profiles/slurm              the same DAG on a SLURM cluster
# Targets: all (default), tables, figures, summary, manifest, screen, fig1_moments ... fig10_real_models.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/inspect.smk"
include: "workflow/rules/screen.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/report.smk"


onstart:
    # the SLURM profile submits every job with sbatch: without it, say so once (not once per job)
    check_executor_commands(workflow)


wildcard_constraints:
    run="[^/]+",  # run ids never contain a slash; the rule looks each one up in RUNS


rule all:
    default_target: True
    input:
        TABLE_FILES,
        RUN_FILES,
        INSPECT_FILES,
        FIGURE_FILES,
        f"{RESULTS}/summary.md",
        f"{RESULTS}/manifest.sha256",
    localrule: True
