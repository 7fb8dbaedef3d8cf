#!/usr/bin/env bash
# GPU check (issues #16, #35), at most ~10 minutes on one GPU: the CUDA-only tests, a 200-step bf16 `lsfa train` on
# CUDA, a 4-bit QLoRA `lsfa train` (where bitsandbytes is installed), `lsfa bench --device cuda`, and the large-model
# paths (scripts/gpu_large_models.py: a 1B-shaped Llama in bf16 LoRA and 4-bit QLoRA with gradient checkpointing,
# FlashAttention-2 padding-free vs SDPA where flash-attn is installed, the memory estimate beside measured peaks;
# written to $out/large-models.json), `lsfa predict --device cuda` against `--device cpu`, the multimodal Gemma 3
# text-only and device tests, then one summary line. Exits 0 with a clear message where there is no GPU.
#
# The GPU machine reaches no package registry and has its own torch / transformers / peft / accelerate, so lsfa
# goes in with `pip install --no-deps -e .`; nothing of ../shared travels, so the model is a tiny llama built
# from a config (tests/tiny.py) and the data a slice prepared here and carried in an ignored folder:
#   scripts/gpu-check.sh --prepare            # on this machine: writes gpu-data/conll2003 (first 2,000 / 500 / 500)
#   scripts/gpu-check.sh                      # on the GPU machine (carry gpu-data); writes gpu-check.log
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--prepare" ]; then
  mkdir -p gpu-data/conll2003
  for split in train:2000 dev:500 test:500; do
    name=${split%%:*}; count=${split##*:}
    awk -v n="$count" 'BEGIN{s=0} /^$/{s++; print; if (s>=n) exit; next} {print}' \
      "${LSFA_DATA_DIR:-../shared/data}/conll2003/$name.txt" > "gpu-data/conll2003/$name.txt"
  done
  grep -qx "gpu-data/" .git/info/exclude 2>/dev/null || echo "gpu-data/" >> .git/info/exclude
  echo "gpu-data/conll2003 ready (not committed: corpus text)"; exit 0
fi
if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu-check: no CUDA GPU on this machine; nothing to check (run it where one is)"; exit 0
fi
out=${OUT:-gpu-check-out}; mkdir -p "$out"
pip install --quiet --no-deps -e . >"$out/install.log" 2>&1 || { echo "gpu-check: pip install --no-deps -e . failed"; exit 1; }
python -c "import torch, transformers, peft; print('versions:', torch.__version__, transformers.__version__, peft.__version__, torch.cuda.get_device_name(0))" | tee "$out/versions.txt"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false LSFA_DATA_DIR=$PWD/gpu-data
start=$(date +%s)
timeout 180 python -m pytest -q -p no:cacheprovider -m cuda tests/models/test_cuda.py >"$out/pytest.log" 2>&1; tests=$?
model=$(python -c "from pathlib import Path; from tests.tiny import tiny_decoder_dir; print(tiny_decoder_dir(Path('$out/tiny'), 'llama', num_layers=4))")
timeout 240 lsfa train --model "$model" --corpus conll2003 --max-steps 200 --precision bf16 --batch-size 16 \
  --learning-rate 1e-3 --test-split null --output-dir "$out/run" >"$out/train.log" 2>&1; train=$?
timeout 180 lsfa bench --model-dir "$out/run/model" --corpus conll2003 --split test --device cuda \
  --json "$out/bench.json" --train-steps 20 --rounds 2 >"$out/bench.log" 2>&1; bench=$?
if python -c "import bitsandbytes" 2>/dev/null; then
  timeout 150 lsfa train --model "$model" --corpus conll2003 --max-steps 60 --quantize 4bit --precision bf16 \
    --gradient-checkpointing --batch-size 16 --learning-rate 1e-3 --test-split null --dev-limit 100 \
    --output-dir "$out/qlora" >"$out/qlora.log" 2>&1; qlora=$?
else
  qlora=skipped; echo "bitsandbytes not installed" >"$out/qlora.log"
fi
timeout 300 python scripts/gpu_large_models.py "$out/large-models.json" >"$out/large-models.log" 2>&1; large=$?
# --device cuda for predict (the same entities as --device cpu in fp32), and the multimodal Gemma 3 text-only build
# and the device tests under this machine's own transformers / torch (tests/models/test_gemma3_multimodal.py)
text="Peter Blackburn flew from Brussels to London with the European Commission ."
for dev in cpu cuda; do
  timeout 60 lsfa predict --model-dir "$out/run/model" --text "$text" --precision fp32 --device "$dev" \
    >"$out/predict-$dev.json" 2>"$out/predict-$dev.log"
done
python -c "import json, sys; a, b = ([(e['start'], e['end'], e['label']) for e in json.load(open(f'$out/predict-{d}.json'))['entities']] for d in ('cpu', 'cuda')); sys.exit(a != b)" \
  2>/dev/null; predict=$?  # the spans, not the scores' last digits
timeout 120 python -m pytest -q -p no:cacheprovider tests/models/test_gemma3_multimodal.py tests/inference/test_device.py \
  >"$out/gemma3-device.log" 2>&1; gemma3=$?
f1=$(python -c "import json; print(round(json.load(open('$out/run/metrics.json'))['dev']['micro']['f1'], 4))" 2>/dev/null || echo "?")
speed=$(python -c "import json; r=json.load(open('$out/bench.json')); print(round(r['inference']['optimised']['sentences_per_second'], 1), 'sent/s, x', round(r['inference']['speedup'], 2))" 2>/dev/null || echo "?")
echo "gpu-check: tests rc=$tests, train rc=$train (200 bf16 steps, dev F1 $f1), qlora rc=$qlora, bench rc=$bench ($speed), large-models rc=$large ($out/large-models.json), predict --device cuda = cpu rc=$predict, gemma3/device tests rc=$gemma3, $(( $(date +%s) - start )) s" | tee "$out/summary.txt"
[ "$tests" = 0 ] && [ "$train" = 0 ] && [ "$bench" = 0 ] && [ "$large" = 0 ] && [ "$qlora" != 1 ] && [ "$predict" = 0 ] \
  && [ "$gemma3" = 0 ]
