#!/usr/bin/env bash
# bench/dist_scaling.sh KILN OUT.md: data-parallel scaling on CPU ranks (docs/distributed.md):
# 1 and 2 ranks of one thread each (OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=1), the seed model and
# ResNet-20 at a fixed global batch, synthetic data, SGD, --sync-bn. Each case runs 1 and 3
# epochs: the difference of their wall times over 2 epochs is one steady epoch (start-up, MPI
# included, cancels), which gives images/s; rank 0's time in collectives in the 3-epoch run
# (kiln's last line) over its steps gives the communication time per step (it includes waiting
# for the slower rank). Writes a Markdown table to OUT.md.
set -euo pipefail
kiln=$1 out=$2
cores=$(nproc --all) # before OMP_NUM_THREADS, which nproc obeys
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
{
  echo "# Data-parallel scaling on CPU ranks, $(date -u +%Y-%m-%d), $(hostname), kiln $(git rev-parse --short HEAD 2>/dev/null || echo ?)"
  echo
  echo "\`bench/dist_scaling.sh $kiln $out\` on $cores cores shared with other users (the numbers are noisy)."
  echo
  echo "| model | global batch | ranks | ms/step | images/s | efficiency | in collectives per step (ms) |"
  echo "|---|---|---|---|---|---|---|"
} >"$out"
now() { date +%s.%N; }
train() { # model batch train-size image-size ranks epochs -> the log in $tmp/log
  local cmd=("$kiln" train --model "$1" --data synthetic --train-size "$3" --test-size 32 --image-size "$4"
             --batch-size "$2" --epochs "$6" --optimizer sgd --device cpu --verbose 2 --sync-bn --seed 1)
  if [ "$5" -gt 1 ]; then mpirun --oversubscribe --bind-to none -np "$5" "${cmd[@]}" >"$tmp/log" 2>&1
  else "${cmd[@]}" >"$tmp/log" 2>&1; fi
}
run() { # model batch train-size image-size ranks -> "ms_per_step comm_ms_per_step"
  local t0 t1 t2 steps comm
  t0=$(now); train "$1" "$2" "$3" "$4" "$5" 1; t1=$(now); train "$1" "$2" "$3" "$4" "$5" 3; t2=$(now)
  steps=$(( $3 / $2 ))
  comm=$(grep -oE '[0-9.]+ s of rank 0 in collectives' "$tmp/log" | grep -oE '^[0-9.]+' || echo 0)
  awk -v a="$t0" -v b="$t1" -v c="$t2" -v s="$steps" -v k="$comm" 'BEGIN { printf "%.1f %.2f", ((c - b) - (b - a)) / 2 / s * 1000, k / (3 * s) * 1000 }'
}
for spec in "seed-cnn 64 512 32" "resnet20 64 256 32"; do
  set -- $spec
  one=$(run "$1" "$2" "$3" "$4" 1)
  two=$(run "$1" "$2" "$3" "$4" 2)
  ms1=${one%% *}
  for r in "1 $one" "2 $two"; do
    set -- $spec $r
    awk -v m="$1" -v b="$2" -v np="$5" -v ms="$6" -v c="$7" -v ms1="$ms1" 'BEGIN {
      printf "| %s | %d | %d | %.1f | %.0f | %.2f | %.2f |\n", m, b, np, ms, b * 1000 / ms, ms1 / ms / np, c }' >>"$out"
  done
done
cat "$out"
