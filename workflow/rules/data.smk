# Stage 1: the corpus, tokenized once for every run (nanoGPT-format uint16 .bin files).


rule corpus:
    output:
        meta=f"{RESULTS}/data/meta.json",
    log:
        f"{LOGS}/corpus.log",
    params:
        data=BASE.get("data", {}),
        folder=lambda wc, output: os.path.dirname(output.meta),
    conda:
        CONDA_ENV
    script:
        "../scripts/prepare_corpus.py"
