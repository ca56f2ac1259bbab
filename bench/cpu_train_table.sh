#!/usr/bin/env bash
# bench/cpu_train_table.sh: the CPU training table of issue 12 in one run: for every config
# (the seed model on 28x28x1 and on 32x32x3 at batch 32, ResNet-20 on 32x32x3 at batch 128) and
# every thread count (1 and 2), `kiln-bench train --device cpu`, bench/torch_train.py (PyTorch)
# and bench/keras_train.py (Keras 3 on TensorFlow), one after the other, each in a fresh process
# with OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=N (PyTorch: torch.set_num_threads(N); TensorFlow:
# intra- and inter-op pools of N; kiln: --threads N when `kiln-bench train --help` offers it).
# Same models (checked layer by layer: the table says so), Adam, batch sizes, data shapes.
# An "epoch" is a fixed number of steps: STEPS_SEED (50) for the seed model, STEPS_RESNET (20)
# for ResNet-20; epoch 1 warms up, epoch 2 is timed (--reps 1): the table gives its ms/step.
# Writes bench/results/<date>-<machine>-cpu_train.{jsonl,md} (machine: $KILN_MACHINE, else the
# host name) with the command, the commit and the machine; prints the table.
#
#   usage: bench/cpu_train_table.sh [BUILD_DIR]     (BUILD_DIR holds bench/kiln-bench; default build)
#   env:   TORCH_PY (python3 with torch: /usr/bin/python3), KERAS_PY (python with tensorflow and
#          keras: /work/venv-tf/bin/python when it exists, else python3), THREADS ("1 2"),
#          STEPS_SEED, STEPS_RESNET, KILN_MACHINE, NOTE (a line added to the table's header)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bench=$build/bench/kiln-bench
[ -x "$bench" ] || { echo "cpu_train_table: no $bench (build kiln_bench first)" >&2; exit 2; }
torch_py=${TORCH_PY:-/usr/bin/python3}
keras_py=${KERAS_PY:-$( [ -x /work/venv-tf/bin/python ] && echo /work/venv-tf/bin/python || echo python3)}
threads_list=${THREADS:-1 2}
steps_seed=${STEPS_SEED:-50}
steps_resnet=${STEPS_RESNET:-20}
machine=${KILN_MACHINE:-$(hostname -s)}
dirty=$(git status --porcelain --untracked-files=no | wc -l)
KILN_COMMIT="$(git rev-parse --short HEAD)$([ "$dirty" -gt 0 ] && echo " (+$dirty uncommitted files)" || true)"
export KILN_COMMIT
stem=bench/results/$(date -u +%Y-%m-%d)-$machine-cpu_train
out=$stem.jsonl
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
: >"$out"
train_help=$("$bench" train --help 2>&1; "$bench" --help 2>&1 || true) # --threads is a global option
case $train_help in *--threads*) threads_flag=yes ;; *) threads_flag=no ;; esac
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)

configs=("seed-cnn 32 28x28x1 $steps_seed" "seed-cnn 32 32x32x3 $steps_seed" "resnet20 128 32x32x3 $steps_resnet")
for t in $threads_list; do
  for cfg in "${configs[@]}"; do
    read -r model batch input steps <<<"$cfg"
    echo "{\"bench\":\"config\",\"threads\":$t,\"env\":\"OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t\",\"kiln_threads_flag\":\"$threads_flag\"}" >>"$out"
    common=(--model "$model" --batch "$batch" --steps "$steps" --reps 1 --input "$input" --json "$tmp")
    kiln_threads=()
    [ "$threads_flag" = yes ] && kiln_threads=(--threads "$t")
    for impl in kiln torch keras; do
      echo "cpu_train_table: $impl $model $input batch $batch, $t thread(s), 2 epochs of $steps steps" >&2
      case $impl in
        kiln) cmd=("$bench" train --device cpu "${common[@]}" "${kiln_threads[@]}") ;;
        torch) cmd=("$torch_py" bench/torch_train.py --device cpu --threads "$t" "${common[@]}") ;;
        keras) cmd=("$keras_py" bench/keras_train.py --threads "$t" "${common[@]}") ;;
      esac
      if OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t MKL_NUM_THREADS=$t "${cmd[@]}"; then
        cat "$tmp" >>"$out"
      else
        echo "cpu_train_table: $impl $model $input threads $t failed (left out of the table)" >&2
      fi
    done
  done
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
python3 bench/cpu_train_table.py "$out" --out "$stem.md" \
  --note "command: \`bench/cpu_train_table.sh $*\` (THREADS=\"$threads_list\" STEPS_SEED=$steps_seed STEPS_RESNET=$steps_resnet); started $started, finished $(date -u +%Y-%m-%dT%H:%M:%SZ); commit $KILN_COMMIT" \
  --note "machine: $machine, $cpu, $(nproc) CPUs online, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); load average $load_before before, $(cut -d' ' -f1-3 /proc/loadavg) after" \
  --note "epoch = a fixed number of steps (steps/epoch column); epoch 1 warms up, the table gives epoch 2's ms/step (one epoch timed). kiln vs X = X's ms/step / kiln's (above 1x kiln is faster). Each run is a fresh process with OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = threads; PyTorch torch.set_num_threads, TensorFlow intra/inter-op threads; kiln --threads: $threads_flag" \
  --note "data: random images in [0, 1) and labels, NHWC for kiln and Keras, NCHW (PyTorch's default) for PyTorch; Adam lr 1e-3 eps 1e-7; BN momentum 0.99 / eps 1e-3 (Keras' defaults) everywhere" \
  ${NOTE:+--note "$NOTE"}
