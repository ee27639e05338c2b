"""Every run's Wasserstein rows (written by its training job) in one table (rule wasserstein).
Standalone, measuring every run first: python wasserstein_table.py config/config.yaml"""
import sys

from lnstab import lineage
from lnstab.study import load_study, redirect_output, run_wasserstein, wasserstein_table

if "snakemake" in globals():
    redirect_output(snakemake.log[0])
    with lineage.job(snakemake):  # inputs as their jobs wrote them; this job's record
        wasserstein_table(snakemake.input.per_run, snakemake.input.runs, snakemake.params.stem)
elif __name__ == "__main__":
    cfg, runs = load_study(sys.argv[1])
    results = cfg.get("results", "results")
    for r in runs:
        run_wasserstein(f"{results}/runs/{r}", f"{results}/data/meta.json", f"{results}/runs/{r}/wasserstein.csv")
    wasserstein_table([f"{results}/runs/{r}/wasserstein.csv" for r in runs], f"{results}/tables/runs.csv",
                      f"{results}/tables/wasserstein")
