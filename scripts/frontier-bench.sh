#!/usr/bin/env bash
# The frontier bench (issue #34 item 4): for each corpus and for 1 and 2 threads, ONE `lsfa bench` run times every
# system of docs/results/frontier.md on the same first 1,000 test sentences, in interleaved rounds: gemma3-270m
# (the main tagger: also its fp32 reference recipe), gemma3-270m K=9 (gold-only and distilled share it),
# smollm2-135m and smollm2-135m K=20 (--tagger-dir), mpnet-base (--compare's encoder), minilm-l6 (--tagger-dir)
# and the spaCy peer, each on lsfa's fastest path for this CPU (bf16-full where bf16 pays, else fp32).
# The taggers are two-step stand-ins with the cells' architectures and label sets
# (configs/experiments/frontier-speed.yaml): timing needs the architecture, not the trained weights; F1 comes
# from the committed full-data cells (scripts/frontier_report.py), never from these.
# Run it on an otherwise idle machine:
#   scripts/frontier-bench.sh            (re-running skips the bench files that exist)
# Environment: LSFA and PYTHON (the executables), OUT (folder), SENTENCES, THREADS ("1 2"), CORPORA, for a trial.
set -eu
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false LSFA_DATA_DIR="${LSFA_DATA_DIR:-$(cd ../shared/data && pwd)}"
LSFA="${LSFA:-lsfa}"
PYTHON="${PYTHON:-python}"
out="${OUT:-docs/results/frontier}"
mkdir -p "$out"
"$LSFA" experiment run configs/experiments/frontier-speed.yaml
for corpus in ${CORPORA:-bc5cdr conll2003}; do
  runs=runs/frontier-speed/$corpus
  lora() { echo "$runs/$1/lora/full/seed42/model"; }
  full() { echo "$runs/$1/full/full/seed42/model"; }
  for threads in ${THREADS:-1 2}; do
    json="$out/$corpus-t$threads.json"
    [ -f "$json" ] && continue
    OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads "$LSFA" bench --model-dir "$(lora gemma3-270m)" \
      --corpus "$corpus" --split test --sentences "${SENTENCES:-1000}" --threads "$threads" --train-steps 0 \
      --ablation-sentences 0 --compare --encoder-dir "$(full mpnet-base)" \
      --spacy-model "$runs/spacy/tok2vec/none/seed42" --tagger-dir "gemma3-270m-k9=$(lora gemma3-270m-k9)" \
      --tagger-dir "smollm2-135m=$(lora smollm2-135m)" --tagger-dir "smollm2-135m-k20=$(lora smollm2-135m-k20)" \
      --tagger-dir "minilm-l6=$(full minilm-l6)" --json "$json"
  done
done
"$PYTHON" scripts/frontier_report.py "$out"
