#!/usr/bin/env bash
# Runs a StreamJob locally, in one process, on embedded defaults (generated data,
# state in a local folder), installing what is missing first.
#
#   scripts/run-local.sh [MANIFEST]      (default: examples/local-clicks.yaml)
#
# Today this builds `strom` and checks the manifest as `kubectl apply` would; the
# engine that runs the job (`strom run`) is the runtime's next step.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

manifest=${1:-examples/local-clicks.yaml}
stage "system packages" ensure_debian_packages
stage "rust toolchain" ensure_rust
stage "build strom" cargo build --quiet --release -p strom-runtime --bin strom
strom="$CARGO_TARGET_DIR/release/strom"
stage "validate $manifest" "$strom" validate "$manifest"
echo
echo "The manifest is valid. Running it locally (strom run) arrives with the runtime engine."
