# Stage 3: every run folder into pandas tables, growth-law fits and the claims verdicts.


rule collect:
    localrule: True
    input:
        summaries=expand(f"{RUN_DIR}/summary.json", run=RUNS),
    output:
        **{t: f"{RESULTS}/tables/{t}.csv" for t in ["metrics", "probes", "bounds", "timings"]},
        **table_outputs("runs"),
    log:
        f"{LOGS}/collect.log",
    params:
        runs=RUNS,
        run_dirs=lambda wc, input: {r: os.path.dirname(s) for r, s in zip(RUNS, input.summaries)},
        tables=lambda wc, output: os.path.dirname(output.metrics),
    conda:
        CONDA_ENV
    script:
        "../scripts/collect_tables.py"


rule growth:
    localrule: True
    input:
        probes=f"{RESULTS}/tables/probes.csv",
    output:
        **table_outputs("growth"),
    log:
        f"{LOGS}/growth.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/growth_table.py"


rule claims:
    localrule: True
    input:
        runs=f"{RESULTS}/tables/runs.csv",
        probes=f"{RESULTS}/tables/probes.csv",
        growth=f"{RESULTS}/tables/growth.csv",
    output:
        **table_outputs("claims"),
    log:
        f"{LOGS}/claims.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/claims_table.py"


rule tables:
    localrule: True
    input:
        TABLE_FILES,
