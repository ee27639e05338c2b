# Stage 2: the training jobs, one per training group (lnstab.groups: runs of one model shape trained
# together as one stacked model; groups.max_runs runs at most, 1 for one job per run). Each run
# resumes from its own checkpoint (ckpt.pt, not a declared output, so Snakemake never deletes it
# after a failure or a time-out). The same job measures each trained run's Wasserstein
# sensitivity (wasserstein.csv, lnstab.wasserstein) where the study has that stage.

for _group, _members in GROUPS.items():

    rule:
        name:
            f"train_{_group}"
        input:
            meta=rules.corpus.output.meta,
        output:
            # (not in the report: a clone has the study's metrics table, not the run folders)
            expand(f"{RESULTS}/runs/{{run}}/{{name}}", run=_members, name=RUN_OUTPUTS),
        log:
            f"{LOGS}/train/{_group}.log",
        benchmark:
            f"{RESULTS}/benchmarks/train/{_group}.tsv"
        conda:
            CONDA_ENV
        threads: TRAIN_THREADS
        resources:
            **group_resources(len(_members)),
        params:
            processes=TRAIN_RESOURCES["processes"],
            name=_group,
            grids=[RUNS[run] for run in _members],
            base=BASE,
            folders=[f"{RESULTS}/runs/{run}" for run in _members],
        script:
            "../scripts/train_group.py"
