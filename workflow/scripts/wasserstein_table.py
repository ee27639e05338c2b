"""Trained models -> Wasserstein sensitivity table. Standalone: python wasserstein_table.py config/config.yaml"""
import sys

from lnstab.study import load_study, redirect_output, wasserstein_table

if "snakemake" in globals():
    redirect_output(snakemake.log[0])
    wasserstein_table(snakemake.params.run_dirs, snakemake.input.runs, snakemake.input.meta, snakemake.params.stem)
elif __name__ == "__main__":
    cfg, runs = load_study(sys.argv[1])
    results = cfg.get("results", "results")
    wasserstein_table({r: f"{results}/runs/{r}" for r in runs}, f"{results}/tables/runs.csv",
                      f"{results}/data/meta.json", f"{results}/tables/wasserstein")
