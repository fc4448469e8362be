#!/bin/bash
# lr sweep at 8 trajectories (validation: test set = trajectories 8..15), 500 steps
# usage: OUT=dir benchmarks/lr_sweep.sh finetuned|scratch LR [LR ...]
cd "$(dirname "$0")/.."
run=$1; shift
mkdir -p "${OUT:-/tmp/lr_sweep}"
for lr in "$@"; do
  for fam in burgers2d wave gray_scott; do
    if [ $run = finetuned ]; then opt="--lr $lr"; else opt="--scratch-lr $lr"; fi
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/transfer.py --parts transfer --counts 8 --runs $run $opt \
      --families $fam --out ${OUT:-/tmp/lr_sweep}/${run}_${lr}_${fam}.md > ${OUT:-/tmp/lr_sweep}/${run}_${lr}_${fam}.log 2>&1
  done
done
