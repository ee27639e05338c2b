"""Growth-law fits. Standalone: python growth_table.py results/tables/probes.csv results/tables/growth"""
import sys

from lnstab.study import make_growth_table, redirect_output

if "snakemake" in globals():
    redirect_output(snakemake.log[0])
    make_growth_table(snakemake.input.probes, snakemake.output.csv[:-len(".csv")])
elif __name__ == "__main__":
    make_growth_table(sys.argv[1], sys.argv[2])
