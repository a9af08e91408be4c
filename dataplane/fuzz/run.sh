#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 60) from generated seeds.
#   dataplane/fuzz/run.sh [SECONDS] [TARGET...]
# cargo-fuzz needs nightly flags; on the stable toolchain here they are
# enabled with RUSTC_BOOTSTRAP=1 for the fuzz build only.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(parse engine config)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
cargo run -q -p dataplane --example fuzz_seeds -- "$seeds"
for t in "${targets[@]}"; do
  case "$t" in
    parse) corpora=("$seeds/parse") ;;
    engine) corpora=("$seeds/engine" "$seeds/engine-outside") ;;
    config) mkdir -p "$seeds/config" && cp config/examples/*.yaml config/src/default.yaml "$seeds/config/" && corpora=("$seeds/config") ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
  echo "== fuzzing $t for ${secs}s"
  (cd dataplane && RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "${corpora[@]}" -- -max_total_time="$secs" -max_len=512 2>&1 | tail -n 3)
done
