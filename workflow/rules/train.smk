# Stage 2: one training run per grid point. Resumes from its own checkpoint (ckpt.pt, not a
# declared output, so Snakemake never deletes it after a failure or a time-out).


rule train:
    input:
        meta=rules.corpus.output.meta,
    output:
        summary=f"{RUN_DIR}/summary.json",
        provenance=f"{RUN_DIR}/provenance.json",
        # (not in the report: a clone has the study's metrics table, not the run folders)
        metrics=f"{RUN_DIR}/metrics.csv",
        probes=f"{RUN_DIR}/probes.csv",
        bounds=f"{RUN_DIR}/bounds.csv",
    log:
        f"{LOGS}/train/{{run}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{run}}.tsv"
    conda:
        CONDA_ENV
    threads: TRAIN_THREADS
    resources:
        **TRAIN_RESOURCES,
    params:
        processes=TRAIN_RESOURCES["processes"],
        grid=lambda wc: RUNS[wc.run],
        base=BASE,
        folder=lambda wc, output: os.path.dirname(output.summary),
    script:
        "../scripts/train_run.py"
