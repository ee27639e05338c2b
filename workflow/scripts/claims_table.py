"""Claims and verdicts, demonstrations, software checks, the dt ablation.
Standalone: python claims_table.py results/tables/runs.csv results/tables"""
import sys

from lnstab import lineage
from lnstab.study import make_claims_table, redirect_output

if "snakemake" in globals():
    redirect_output(snakemake.log[0])
    with lineage.job(snakemake):  # inputs as their jobs wrote them; this job's record
        make_claims_table(snakemake.input.runs, snakemake.params.tables)
elif __name__ == "__main__":
    make_claims_table(*sys.argv[1:3])
