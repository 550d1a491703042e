#!/usr/bin/env bash
# Runs a StreamJob locally, in one process, on embedded defaults (generated data,
# state in a local folder), installing what is missing first.
#
#   scripts/run-local.sh [MANIFEST] [strom run flags...]
#
# Default: examples/local-pipeline.yaml for 20 s, then a stop with a savepoint;
# resume it with the --from-savepoint command it prints. Ctrl-C stops earlier.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

manifest=${1:-examples/local-pipeline.yaml}
shift || true
flags=("$@")
if [ ${#flags[@]} -eq 0 ]; then
  flags=(--stop-after 20s)
fi
stage "system packages" ensure_debian_packages
stage "rust toolchain" ensure_rust
stage "build strom" cargo build --quiet --release -p strom-runtime --bin strom
strom="$CARGO_TARGET_DIR/release/strom"
stage "validate $manifest" "$strom" validate "$manifest"
echo
echo "The last 10 results (running clicks per user); progress on stderr:"
"$strom" run "$manifest" --print-output "${flags[@]}" | tail -n 12
