"""Train one grid point. Standalone: python train_run.py config/config.yaml RUN_ID [PROCESSES]"""
import sys

from lnstab import lineage
from lnstab.study import load_study, redirect_output, train_grid_point

if "snakemake" in globals():
    redirect_output(snakemake.log[0])
    with lineage.job(snakemake):  # inputs as their jobs wrote them; this job's record
        # watch: read from the config, not a param, so that turning it on retrains nothing
        train_grid_point(snakemake.params.grid, snakemake.params.base, snakemake.input.meta,
                         snakemake.params.folder, snakemake.params.processes, snakemake.config["watch"])
elif __name__ == "__main__":
    cfg, runs = load_study(sys.argv[1])
    results = cfg.get("results", "results")
    train_grid_point(runs[sys.argv[2]], cfg.get("base", {}), f"{results}/data/meta.json",
                     f"{results}/runs/{sys.argv[2]}", int(sys.argv[3]) if len(sys.argv) > 3 else 1,
                     cfg.get("watch", []))
