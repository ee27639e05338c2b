"""Tokenize the corpus once for all runs. Standalone: python prepare_corpus.py config/config.yaml"""
import sys

from lnstab.study import load_study, prepare_corpus, redirect_output

if "snakemake" in globals():
    redirect_output(snakemake.log[0])
    prepare_corpus(snakemake.params.data, snakemake.params.folder, snakemake.output.meta)
elif __name__ == "__main__":
    cfg, _ = load_study(sys.argv[1] if len(sys.argv) > 1 else "config/config.yaml")
    results = cfg.get("results", "results")
    prepare_corpus(cfg.get("base", {}).get("data", {}), f"{results}/data", f"{results}/data/meta.json")
