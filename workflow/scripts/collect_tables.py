"""Run folders -> tables. Standalone: python collect_tables.py config/config.yaml"""
import sys

from lnstab import lineage
from lnstab.study import collect_tables, load_study, redirect_output

if "snakemake" in globals():
    redirect_output(snakemake.log[0])
    with lineage.job(snakemake):  # inputs as their jobs wrote them; this job's record
        p = snakemake.params
        collect_tables(p.run_dirs, p.runs, snakemake.input.baselines, p.tables)
elif __name__ == "__main__":
    cfg, runs = load_study(sys.argv[1])
    results = cfg.get("results", "results")
    collect_tables({r: f"{results}/runs/{r}" for r in runs}, runs, f"{results}/tables/baselines.csv",
                   f"{results}/tables")
