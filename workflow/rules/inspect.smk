# Stage 3b: checkpoints measured as a training run's final probe (lnstab inspect): the trained
# models of inspect.models (the three real ones by default), and one run of this study exported to
# transformers' format, whose inspected rows must equal the run's own final probe (the round
# trip). Then their tables.
INSPECT_DIR = f"{RESULTS}/inspect/{{name}}"
INSPECT_OUTPUTS = list(INSPECT_FILE_NAMES)
INSPECT_FOLDERS = {n: f"{RESULTS}/inspect/{n}" for n in INSPECTED}
if ROUNDTRIP:
    INSPECT_FOLDERS[f"export-{ROUNDTRIP}"] = f"{RESULTS}/inspect/export-{ROUNDTRIP}"
INSPECT_FILES = [f"{d}/{f}" for d in INSPECT_FOLDERS.values() for f in INSPECT_OUTPUTS]


if INSPECTED:

    rule inspect:
        input:
            inspected_config,
        output:
            **{os.path.splitext(f)[0]: f"{INSPECT_DIR}/{f}" for f in INSPECT_OUTPUTS},
        log:
            f"{LOGS}/inspect/{{name}}.log",
        wildcard_constraints:
            name="|".join(re.escape(n) for n in INSPECTED),
        conda:
            CONDA_ENV
        threads: config["inspect"]["threads"]
        params:
            model=lambda wc: INSPECTED[wc.name],
            settings=config["inspect"],
        script:
            "../scripts/inspect_model.py"


if ROUNDTRIP:

    rule inspect_export:
        input:
            summary=f"{RESULTS}/runs/{ROUNDTRIP}/summary.json",
            probes=f"{RESULTS}/runs/{ROUNDTRIP}/probes.csv",
            bounds=f"{RESULTS}/runs/{ROUNDTRIP}/bounds.csv",
            meta=rules.corpus.output.meta,
        output:
            **{
                os.path.splitext(f)[0]: f"{RESULTS}/inspect/export-{ROUNDTRIP}/{f}"
                for f in INSPECT_OUTPUTS + ["roundtrip.json"]
            },
        log:
            f"{LOGS}/inspect/export-{ROUNDTRIP}.log",
        conda:
            CONDA_ENV
        params:
            folder=lambda wc, input: os.path.dirname(input.summary),
        script:
            "../scripts/inspect_model.py"


rule inspection_tables:
    input:
        INSPECT_FILES,
    output:
        **{
            f"{table}_{ext}": path
            for table in INSPECTION_TABLES
            for ext, path in table_outputs(table).items()
        },
    log:
        f"{LOGS}/inspection_tables.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        folders=INSPECT_FOLDERS,
    script:
        "../scripts/inspect_model.py"
