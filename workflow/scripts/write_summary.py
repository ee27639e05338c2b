"""The one-page summary. Standalone: python write_summary.py config/config.yaml"""
import sys

from lnstab import lineage
from lnstab.study import load_study, redirect_output, write_summary

if "snakemake" in globals():
    redirect_output(snakemake.log[0])
    with lineage.job(snakemake):  # inputs as their jobs wrote them; this job's record
        p = snakemake.params
        write_summary(p.tables, p.figdir, p.config, snakemake.output[0])
elif __name__ == "__main__":
    cfg, _ = load_study(sys.argv[1] if len(sys.argv) > 1 else "config/config.yaml")
    results = cfg.get("results", "results")
    write_summary(f"{results}/tables", cfg.get("figures", "figures"), cfg, f"{results}/summary.md")
