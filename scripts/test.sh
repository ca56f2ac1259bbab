#!/usr/bin/env bash
# scripts/test.sh: kiln's test command (the README's second quick-start command; .ci/run
# calls exactly this). On a fresh Debian machine it installs what is missing (apt-get, when
# root), then builds and runs every test twice:
#   1. build/       the default build: the CUDA backend too when nvcc is found, warnings as errors;
#   2. build-asan/  the CPU-only build (-DKILN_CUDA=OFF) under AddressSanitizer and
#                   UndefinedBehaviorSanitizer;
# both with the CUDA emulator (-DKILN_CUDA_EMU=ON): without a GPU the CUDA tests run kiln's
# kernels on the "cuda-emu" backend, and each suite ends with the line
#   cuda emulation: K kernels executed, R parity rows passed, F failed, S skipped
# (docs/testing.md, "CUDA emulation");
# checks the architecture on the first (no upward include or call, no circle of files, libkiln.so
# exports the public API only), then fuzzes each file parser for a few seconds (scripts/fuzz.sh), and checks that an
# installed kiln is usable from another project (CMake and pkg-config).
# Exits non-zero when anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=$(nproc 2>/dev/null || echo 2)

. scripts/deps.sh
kiln_install_deps

# The CUDA emulation's summary, from the tests' own lines in $dir/emu.log (tests/support/harness.c
# writes "row start|pass|skip NAME" per parity row run on the cuda-emu backend, the emulator
# "kernel N NAME" for its launches): a row that started and neither passed nor skipped failed.
emu_summary() { # dir
  awk '$1 == "kernel" { k += $2; names[$3] = 1 }
       $1 == "row" && $2 == "start" { st++ } $1 == "row" && $2 == "pass" { p++ } $1 == "row" && $2 == "skip" { sk++ }
       END { n = 0; for (x in names) n++
             printf "cuda emulation: %d kernels executed, %d parity rows passed, %d failed, %d skipped (%d distinct kernels)\n",
                    k, p, st - p - sk, sk, n }' "$1/emu.log" 2>/dev/null ||
    echo "cuda emulation: 0 kernels executed, 0 parity rows passed, 0 failed, 0 skipped (no log)"
}

run_suite() { # dir, cmake args...
  local dir=$1; shift
  echo "== configure $dir: $*"
  cmake -S "$root" -B "$dir" -G Ninja -DKILN_WERROR=ON -DKILN_CUDA_EMU=ON "$@" >"$dir.configure.log" 2>&1 || { cat "$dir.configure.log"; return 1; }
  grep -E "kiln:" "$dir.configure.log" || true
  echo "== build $dir"
  cmake --build "$dir" -j "$jobs"
  echo "== test $dir"
  rm -f "$root/$dir/emu.log"
  (cd "$dir" && KILN_EMU_LOG="$root/$dir/emu.log" ctest --output-on-failure -j 1 --timeout 1200)
  emu_summary "$dir"
}

run_suite build
echo "== architecture: layers, circles and exports (scripts/check_layers.py, check_exports.py)"
python3 scripts/check_layers.py build
python3 scripts/check_exports.py build/libkiln.so
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  run_suite build-asan -DKILN_CUDA=OFF -DKILN_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug

echo "== fuzz the file parsers briefly (libFuzzer; scripts/fuzz.sh)"
bash scripts/fuzz.sh "${KILN_FUZZ_SECONDS:-15}"

echo "== install and use from another project"
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install build --prefix "$prefix" >/dev/null
cmake -S tests/consumer -B "$prefix/consumer-build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/consumer-build" >/dev/null
"$prefix/consumer-build/consumer"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
cc tests/consumer/consumer.c -o "$prefix/consumer-pc" $(pkg-config --cflags --libs kiln) -Wl,-rpath,"$prefix/lib"
"$prefix/consumer-pc"
echo "== all tests passed"
