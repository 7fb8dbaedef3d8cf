#!/usr/bin/env bash
# Pareto of F1 against speed on CPU (issue #16): smollm2-135m LS-FA LoRA keeping its first K layers, K in 30 22 16
# 10, each trained on the same short budget (CoNLL-2003 train[:2000], 1 epoch, batch 16), then `lsfa bench` on
# dev[:1000] at `auto` precision (bf16-full where bf16 pays, else fp32) and at int8; the F1 axis is the bench's
# strict F1 of that path on those dev sentences. The encoders and the spaCy peer, trained on the same budget
# (configs/experiments/pareto-peers.yaml), are timed beside the K=30 tagger on the same sentences
# (`lsfa bench --compare`) and drawn as points. Then docs/results/pareto/pareto.md and pareto.png.
#   scripts/pareto.sh            (about 10 minutes per K on 2 threads; re-running skips what exists)
set -eu
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false LSFA_DATA_DIR="${LSFA_DATA_DIR:-$(cd ../shared/data && pwd)}"
out=docs/results/pareto
mkdir -p "$out"
for layers in 30 22 16 10; do
  run=runs/pareto/k$layers
  [ -f "$run/metrics.json" ] || lsfa train -c configs/main.yaml --layers "$layers" --train-limit 2000 \
    --dev-limit 1000 --test-split null --output-dir "$run"
  for precision in auto int8; do
    [ -f "$out/k$layers-$precision.json" ] || lsfa bench --model-dir "$run/model" --corpus conll2003 --split dev \
      --sentences 1000 --precision "$precision" --train-steps 0 --ablation-sentences 0 --json "$out/k$layers-$precision.json"
  done
done
lsfa experiment run configs/experiments/pareto-peers.yaml
peers=runs/pareto/peers/conll2003
for encoder in minilm-l6 mpnet-base; do
  [ -f "$out/peer-$encoder.json" ] || lsfa bench --model-dir runs/pareto/k30/model --corpus conll2003 --split dev \
    --sentences 1000 --precision auto --train-steps 0 --ablation-sentences 0 --compare \
    --encoder-dir "$peers/$encoder/full/full/seed42/model" --spacy-model "$peers/spacy/tok2vec/none/seed42" \
    --json "$out/peer-$encoder.json"
done
python scripts/pareto_plot.py "$out"
