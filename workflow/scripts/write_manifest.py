"""sha256 manifest of tables and figures. Standalone: python write_manifest.py OUT FILE..."""
import sys

from lnstab.study import redirect_output, write_manifest

if "snakemake" in globals():
    redirect_output(snakemake.log[0])
    write_manifest(snakemake.input, snakemake.output[0])
elif __name__ == "__main__":
    write_manifest(sys.argv[2:], sys.argv[1])
