# Stage 3: every run folder into pandas tables (runs with their statistics, losses, tightness,
# scale over training, slopes, and the long tables), then the claims with their verdicts, and
# the Wasserstein sensitivity of every trained model's flow (lnstab.wasserstein).


rule collect:
    input:
        summaries=expand(f"{RUN_DIR}/summary.json", run=RUNS),
        baselines=f"{RESULTS}/tables/baselines.csv",
        run_files=TRAIN_FILES,  # read through run_dirs; inputs so that each is checked (lineage)
    output:
        **{
            t: f"{RESULTS}/tables/{data_file(t)}"
            for t in COLLECTED
            if len(TABLES[t]) == 1
        },
        **{
            f"{t}_{ext}": path
            for t in COLLECTED
            if len(TABLES[t]) > 1
            for ext, path in table_outputs(t).items()
        },
    log:
        f"{LOGS}/collect.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        runs=RUNS,
        run_dirs=lambda wc, input: {
            r: os.path.dirname(s) for r, s in zip(RUNS, input.summaries)
        },
        tables=lambda wc, output: os.path.dirname(output.runs_csv),
    script:
        "../scripts/collect_tables.py"


rule claims:
    input:
        runs=f"{RESULTS}/tables/runs.csv",
        scale=f"{RESULTS}/tables/scale.csv",
    output:
        **{f"{t}_{ext}": path for t in JUDGED for ext, path in table_outputs(t).items()},
    log:
        f"{LOGS}/claims.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        tables=lambda wc, output: os.path.dirname(output.claims_csv),
    script:
        "../scripts/claims_table.py"


rule wasserstein:
    input:
        per_run=expand(f"{RUN_DIR}/wasserstein.csv", run=RUNS),
        runs=f"{RESULTS}/tables/runs.csv",
    output:
        **table_outputs("wasserstein"),
    log:
        f"{LOGS}/wasserstein.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        stem=lambda wc, output: os.path.splitext(output.csv)[0],
    script:
        "../scripts/wasserstein_table.py"


rule tables:
    input:
        TABLE_FILES,
        RUN_FILES,
    localrule: True
