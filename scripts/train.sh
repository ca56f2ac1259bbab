#!/usr/bin/env bash
# scripts/train.sh: kiln's main job, the README's first quick-start command. On a fresh Debian
# machine it installs what is missing (apt-get, when root), builds kiln (with the CUDA backend
# when nvcc is found), and trains the built-in seed-cnn on the built-in synthetic dataset on the
# best device there is (a GPU when one is usable, else the CPU), printing Keras' progress.
# The model, history.csv and the loss/accuracy chart land in runs/seed-cnn/ (or $KILN_OUT).
# Extra arguments go to `kiln train` (e.g. --epochs 3, --device cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
kiln_install_deps
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release >build-release.configure.log 2>&1 || { cat build-release.configure.log; exit 1; }
cmake --build build-release -j "$jobs" --target kiln_cli >/dev/null
# defaults for the flags the caller did not give
args=()
for flag in "--model seed-cnn" "--epochs 10" "--out ${KILN_OUT:-runs/seed-cnn}"; do
  case " $* " in *" ${flag%% *} "* | *" ${flag%% *}="*) ;; *) args+=($flag) ;; esac
done
case " $* " in  # the built-in dataset, validated on its test split
  *" --data "* | *" --data="*) ;;
  *" --validation-"*) args+=(--data synthetic) ;;
  *) args+=(--data synthetic --validation-data synthetic) ;;
esac
exec build-release/kiln train "${args[@]}" "$@"
