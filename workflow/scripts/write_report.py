"""The written report. Standalone: python write_report.py results/tables figures results/report.md"""
import sys
from pathlib import Path

from lnstab.study import redirect_output, write_report

if "snakemake" in globals():
    redirect_output(snakemake.log[0])
    i = snakemake.input
    write_report(i.claims, i.runs, i.growth, snakemake.params.figdir, snakemake.output[0])
elif __name__ == "__main__":
    tables, figdir, out = map(Path, sys.argv[1:4])
    write_report(tables / "claims.csv", tables / "runs.csv", tables / "growth.csv", figdir, out)
