#!/usr/bin/env bash
# bench/gpu-check.sh: the one script a session with the GPU machine runs (through the device
# tool, with .gpu-deps carried): builds kiln for Hopper into build-gpu (kept between calls while
# the machine stays warm), records the machine, and runs one stage:
#
#   tests      ctest (every test, the CUDA parity tests included), compute-sanitizer's memcheck
#              on the CUDA parity rows and the BN CUDA tests, memcheck and racecheck on
#              kiln-bench's small BN cases     -> env.txt ctest.log sanitizer.log
#   bn [ARGS]  kiln-bench bn on the GPU, torch_bn.py on the same configs, merged tables
#                                              -> env.txt bn_kiln.jsonl bn_torch.jsonl bn_table.md
#              Without ARGS the first sub-stage: ResNet-50's shapes in f32, kiln (auto) against
#              cuDNN only (BN_SUBSTAGE1 below); ARGS replace it (the later sub-stages of
#              docs/gpu.md, e.g. --cases resnet50 --dtype f32 --variant block,grid,multi)
#   train      kiln-bench train and torch_train.py (seed-cnn at 32 and 256, resnet20 at 128), merged
#                                              -> env.txt train.jsonl train_table.md
#   all        the three in turn, in one call of at most 10 minutes (docs/gpu.md's plan)
#
# Everything goes under $OUT (env.txt also holds the build log and the benchmarks' progress).
# Every step has a time budget in seconds (docs/gpu.md derives them from counts; override with
# GPU_BUDGET_<STEP>=s) and is cut off there, so `all` ends inside GPU_CHECK_LIMIT (default 560)
# with what it has. Pass the commit being measured as KILN_COMMIT=<hash> (the machine gets the
# working tree without .git).
#
#   usage: source .gpu-deps/env.sh; [KILN_COMMIT=...] bench/gpu-check.sh tests|bn|train|all [ARGS]
set -uo pipefail
cd "$(dirname "$0")/.."
stage=${1:-all}
shift || true
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
limit=${GPU_CHECK_LIMIT:-560}
# the budgets of docs/gpu.md, seconds: 120 + 110 + 90 + 150 + 90 = 560
b_build=${GPU_BUDGET_BUILD:-120}
b_ctest=${GPU_BUDGET_CTEST:-110}
b_sanitizer=${GPU_BUDGET_SANITIZER:-90}
b_bn=${GPU_BUDGET_BN:-150}
b_train=${GPU_BUDGET_TRAIN:-90}
BN_SUBSTAGE1=(--cases resnet50 --dtype f32 --variant kiln,cudnn)
env_txt=$OUT/env.txt
export KILN_COMMIT=${KILN_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
failed=0 # steps that failed; the exit status

fail() { failed=$((failed + 1)); log "FAILED: $*"; }
log() { echo "== [$(date -u +%H:%M:%S) +${SECONDS}s] $*" | tee -a "$env_txt"; }
# A step's budget starts: begin BUDGET_SECONDS. left SHARE: seconds for a part that may take
# SHARE percent of what remains of the step (and of the call's limit), at least 10.
step_end=$limit
begin() { step_end=$((SECONDS + $1)); (( step_end > limit )) && step_end=$limit; }
left() { local r=$(( (step_end - SECONDS) * ${1:-100} / 100 )); echo $(( r < 10 ? 10 : r )); }

record_env() {
  log "environment (stage $stage, commit $KILN_COMMIT)"
  {
    uname -a
    ldd --version 2>&1 | head -1
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit,persistence_mode --format=csv 2>&1
    nvidia-smi 2>&1 | head -20
    nvcc --version 2>&1 | tail -2
    cmake --version | head -1
    echo "CUDNN_ROOT=${CUDNN_ROOT:-unset}"
    python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), torch.cuda.get_device_name(0))' 2>&1
    ls /usr/include/cudnn*.h /usr/local/cuda/include/cudnn*.h 2>&1 | head -4
  } >>"$env_txt" 2>&1
}

# The carried pkg-config files as packed by ../shared/gpu/pack-deps.sh (seen 2026-11-23, by
# configuring with PKG_CONFIG_LIBDIR=/nonexistent on a development machine): Debian's
# openblas.pc has no prefix= line, so its rewritten paths become "/include" and "/lib";
# libcjson.pc (not cjson.pc) is not copied; criterion.pc requires (privately) boxfort, libffi,
# libgit2 and nanomsg, whose .pc files are not carried. Each stops CMake on a machine without
# those packages. Repaired here, idempotently, before configuring (the shared libraries
# themselves are carried; only static linking would need the private requirements).
repair_deps() {
  local pc=.gpu-deps/lib/pkgconfig
  [ -d "$pc" ] || { log "no .gpu-deps: carry it (run with carry [\".gpu-deps\"])"; return 0; }
  for f in "$pc"/*.pc; do
    grep -q '^prefix=' "$f" || sed -i '1i prefix=${pcfiledir}/../..' "$f"
    sed -i '/^Requires.private:/d; /^Libs.private:/d' "$f"
  done
  if [ ! -e "$pc/libcjson.pc" ]; then
    printf '%s\n' 'prefix=${pcfiledir}/../..' 'libdir=${prefix}/lib' 'includedir=${prefix}/include' \
      'Name: libcjson' 'Description: cJSON (carried)' 'Version: 1.7.15' 'Libs: -L${libdir} -lcjson' \
      'Cflags: -I${includedir} -I${includedir}/cjson' >"$pc/libcjson.pc"
  fi
}

build() {
  begin "$b_build"
  repair_deps
  log "configure + build into build-gpu (CUDA arch 90)"
  cmake -S . -B build-gpu -G Ninja -DKILN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DKILN_WERROR="${KILN_WERROR:-OFF}" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/tmp/gpu-configure.log 2>&1
  local rc=$?
  grep -E "kiln:|cuDNN|CUDA" /tmp/gpu-configure.log >>"$env_txt"
  if [ $rc -ne 0 ]; then tail -40 /tmp/gpu-configure.log >>"$env_txt"; log "configure FAILED"; return 1; fi
  # -k 0: build every target that can be built, so one broken test does not stop the benchmarks
  timeout "$(left 100)" cmake --build build-gpu -j "$(nproc)" -- -k 0 >/tmp/gpu-build.log 2>&1
  rc=$?
  echo "build: $(grep -c -i 'warning' /tmp/gpu-build.log) lines mention a warning" >>"$env_txt"
  if [ $rc -ne 0 ]; then
    grep -E -A12 "^FAILED:" /tmp/gpu-build.log | head -80 >>"$env_txt"
    fail "build (rc $rc; what could be built is used)"
  fi
  grep -E "CUDNN_(INCLUDE_DIR|LIBRARY)" build-gpu/CMakeCache.txt >>"$env_txt"
  {
    echo "-- libraries kiln-bench and test_batchnorm load:"
    ldd build-gpu/bench/kiln-bench | grep -E "cudnn|cublas|cudart|openblas|cjson|libz|not found"
    ldd build-gpu/tests/test_batchnorm 2>/dev/null | grep -E "criterion|boxfort|nanomsg|git2|not found"
  } >>"$env_txt" 2>&1
  log "build done"
}

stage_tests() {
  begin "$b_ctest"
  log "ctest (log: ctest.log)"
  (cd build-gpu && timeout "$(left 100)" ctest --output-on-failure -j 8 --timeout 600) >"$OUT/ctest.log" 2>&1
  local rc=$?
  log "ctest rc $rc: $(grep -E 'tests passed|tests failed' "$OUT/ctest.log" | tail -1)"
  [ $rc -eq 0 ] || fail "ctest"
  grep -E "Test +#|Failed|SKIP" "$OUT/ctest.log" | grep -v "Passed" | head -20 | tee -a "$env_txt"
  begin "$b_sanitizer"
  log "compute-sanitizer memcheck on the CUDA parity rows and the BN CUDA tests (log: sanitizer.log)"
  : >"$OUT/sanitizer.log"
  # shares of the step: 35% the 47 op rows, then 35% of the rest the 9 BN tests, then the bench
  local t share filter
  for t in test_ops_parity test_batchnorm_cuda; do
    [ -x "build-gpu/tests/$t" ] || continue
    filter='*'; share=35
    [ $t = test_ops_parity ] && filter='*/cuda_vs_cpu'
    echo "=== $t --filter $filter" >>"$OUT/sanitizer.log"
    timeout "$(left $share)" compute-sanitizer --tool memcheck --target-processes all --error-exitcode 99 \
      "build-gpu/tests/$t" --jobs 1 --filter "$filter" >>"$OUT/sanitizer.log" 2>&1
    rc=$?
    log "sanitizer $t rc $rc ($(grep -E 'ERROR SUMMARY' "$OUT/sanitizer.log" | tail -1))"
    [ $rc -eq 0 ] || fail "compute-sanitizer $t"
  done
  # the benchmark's own kernels and kiln's BN paths as the benchmark drives them, small shapes
  for tool in memcheck racecheck; do
    share=50; [ $tool = racecheck ] && share=100
    echo "=== kiln-bench bn --cases small under $tool" >>"$OUT/sanitizer.log"
    timeout "$(left $share)" compute-sanitizer --tool $tool --error-exitcode 99 build-gpu/bench/kiln-bench bn \
      --device cuda --cases small --dtype f32,bf16 --variant all --no-skip --reps 2 --warmup 1 --cpu-reps 1 --json /dev/null \
      >>"$OUT/sanitizer.log" 2>&1
    rc=$?
    log "sanitizer ($tool) kiln-bench rc $rc ($(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer.log" | tail -1))"
    [ $rc -eq 0 ] || fail "compute-sanitizer $tool kiln-bench"
  done
}

gpu_note() {
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1 |
    sed 's/^/GPU, driver: /'
}

stage_bn() {
  begin "$b_bn"
  local kb=build-gpu/bench/kiln-bench
  [ -x $kb ] || { fail "no kiln-bench was built"; return 1; }
  [ $# -gt 0 ] || set -- "${BN_SUBSTAGE1[@]}"
  $kb bn --device cuda "$@" --list >/tmp/bn_cases.jsonl || { log "kiln-bench bn --list failed"; return 1; }
  log "kiln-bench bn --device cuda $* ($(wc -l </tmp/bn_cases.jsonl) configs)"
  timeout "$(left 55)" $kb bn --device cuda "$@" --json "$OUT/bn_kiln.jsonl" 2>>"$env_txt"
  local rc=$?
  nvidia-smi --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw,clocks_throttle_reasons.active \
    --format=csv >>"$env_txt" 2>&1
  log "kiln-bench bn rc $rc"
  [ $rc -eq 0 ] || fail "kiln-bench bn (rc $rc; 124: cut off in time)"
  log "torch_bn.py on the same configs"
  timeout "$(left 90)" python3 bench/torch_bn.py --device cuda --cases /tmp/bn_cases.jsonl --json "$OUT/bn_torch.jsonl" 2>>"$env_txt"
  rc=$?
  log "torch_bn.py rc $rc"
  [ $rc -eq 0 ] || fail "torch_bn.py (rc $rc)"
  python3 bench/merge_tables.py --kiln "$OUT/bn_kiln.jsonl" --torch "$OUT/bn_torch.jsonl" \
    --out "$OUT/bn_table.md" --note "$(gpu_note)" && log "merged: bn_table.md"
  grep "geomean" "$OUT/bn_table.md" 2>/dev/null | head -12
}

stage_train() {
  begin "$b_train"
  [ -x build-gpu/bench/kiln-bench ] || { fail "no kiln-bench was built"; return 1; }
  log "kiln-bench train --device cuda"
  timeout "$(left 50)" build-gpu/bench/kiln-bench train --device cuda --json /tmp/train_kiln.jsonl 2>>"$env_txt"
  local rc=$?
  log "kiln-bench train rc $rc"
  [ $rc -eq 0 ] || fail "kiln-bench train (rc $rc)"
  log "torch_train.py"
  timeout "$(left 90)" python3 bench/torch_train.py --device cuda --json /tmp/train_torch.jsonl 2>>"$env_txt"
  rc=$?
  log "torch_train.py rc $rc"
  [ $rc -eq 0 ] || fail "torch_train.py (rc $rc)"
  cat /tmp/train_kiln.jsonl /tmp/train_torch.jsonl >"$OUT/train.jsonl" 2>/dev/null
  python3 bench/merge_tables.py --train "$OUT/train.jsonl" --train-out "$OUT/train_table.md" \
    --note "$(gpu_note)" && cat "$OUT/train_table.md"
}

case $stage in
  tests | bn | train | all) ;;
  *) echo "usage: bench/gpu-check.sh tests|bn|train|all [kiln-bench bn options]" >&2; exit 2 ;;
esac
record_env
build || { fail "build"; exit 1; }
case $stage in
  tests) stage_tests ;;
  bn) stage_bn "$@" ;;
  train) stage_train ;;
  all) stage_tests; stage_bn "$@"; stage_train ;;
esac
log "done (stage $stage, $failed failed steps); files in \$OUT: $(ls "$OUT" | tr '\n' ' ')"
[ $failed -eq 0 ]
