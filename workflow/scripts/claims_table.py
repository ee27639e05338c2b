"""Claims and verdicts (and by reference step), demonstrations, software checks, the dt ablation.
Standalone: python claims_table.py results/tables/runs.csv results/tables [results/tables/scale.csv]"""
import sys

from lnstab import lineage
from lnstab.study import make_claims_table, redirect_output

if "snakemake" in globals():
    redirect_output(snakemake.log[0])
    with lineage.job(snakemake):  # inputs as their jobs wrote them; this job's record
        make_claims_table(snakemake.input.runs, snakemake.params.tables, snakemake.input.scale)
elif __name__ == "__main__":
    make_claims_table(*sys.argv[1:4])
