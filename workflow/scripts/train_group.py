"""Train one training group (lnstab.groups), or one run on several processes, then measure each run's
Wasserstein sensitivity where the study has that stage.
Standalone: python train_group.py config/config.yaml GROUP [PROCESSES]"""
import sys

from lnstab import lineage
from lnstab.study import load_study, redirect_output, study_groups, train_grid_points

if "snakemake" in globals():
    redirect_output(snakemake.log[0])
    with lineage.job(snakemake):  # inputs as their jobs wrote them; this job's record
        p = snakemake.params
        # watch: read from the config, not a param, so that turning it on retrains nothing
        train_grid_points(p.name, p.grids, p.base, snakemake.input.meta, p.folders, p.processes,
                          snakemake.config["watch"], any(f.endswith("/wasserstein.csv") for f in snakemake.output))
elif __name__ == "__main__":
    cfg, runs = load_study(sys.argv[1])
    results = cfg.get("results", "results")
    processes = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    members = study_groups(cfg, runs, processes)[sys.argv[2]]
    train_grid_points(sys.argv[2], [runs[r] for r in members], cfg.get("base", {}), f"{results}/data/meta.json",
                      [f"{results}/runs/{r}" for r in members], processes, cfg.get("watch", []),
                      (cfg.get("wasserstein") or {}).get("enabled", True))
