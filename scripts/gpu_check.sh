#!/usr/bin/env bash
# One GPU, under 5 minutes: a few training steps of a Qwen2.5-shaped model with random weights (built in code, no
# download), bf16 autocast over fp32 master weights, then rollout / learner tokens/s and MFU (benchmarks/gpu_report.py).
#   bash scripts/gpu_check.sh                  # Qwen2.5-0.5B shape
#   MODEL=qwen15_random bash scripts/gpu_check.sh
set -euo pipefail
MODEL=${MODEL:-qwen05_random}
OUT=${OUT:-outputs/gpu_check/$MODEL}
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device visible to torch')"
# 16 prompts x 8 responses; a random model rarely emits EOS, so responses run to max_new_tokens (a steady load).
python -m r1zero.train model="$MODEL" template=chatml_fewshot data=arith eval=arith device=cuda dtype=bfloat16 \
  sampling.group_size=8 sampling.max_new_tokens=512 train.total_steps=4 train.prompts_per_rollout=16 \
  train.mini_batch_size=64 train.micro_batch_size=16 train.save_every=0 eval.every=0 eval.at_start=false \
  eval.at_end=false logger.progress_bar=false hydra.run.dir="$OUT"
python benchmarks/gpu_report.py "$OUT"
