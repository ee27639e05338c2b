"""Screen one architecture. Standalone: python screen.py config/config.yaml"""
import sys

from lnstab import lineage
from lnstab.study import load_study, redirect_output, run_screen

if "snakemake" in globals():
    redirect_output(snakemake.log[0])
    with lineage.job(snakemake):  # inputs as their jobs wrote them; this job's record
        run_screen(snakemake.params.base, [], snakemake.params.block, snakemake.params.folder,
                   snakemake.params.tables, figure_stem=False)
elif __name__ == "__main__":
    cfg, _ = load_study(sys.argv[1])
    screen = cfg.get("screen", {})
    results = cfg.get("results", "results")
    run_screen(screen.get("base", {}), [], screen.get("block"), f"{results}/screen", f"{results}/tables",
               figure_stem=False)
