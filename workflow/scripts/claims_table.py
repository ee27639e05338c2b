"""Claims and verdicts. Standalone: python claims_table.py RUNS.csv PROBES.csv GROWTH.csv OUT_STEM"""
import sys

from lnstab.study import make_claims_table, redirect_output

if "snakemake" in globals():
    redirect_output(snakemake.log[0])
    i = snakemake.input
    make_claims_table(i.runs, i.probes, i.growth, snakemake.output.csv[:-len(".csv")])
elif __name__ == "__main__":
    make_claims_table(*sys.argv[1:5])
