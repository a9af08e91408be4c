#!/usr/bin/env bash
# test.sh: runs every masq test. The README's second command; .ci/run calls it.
#
#   sudo ./test.sh        (root is needed once the namespace lab tests land)
#
# Set-up it does itself: checks the Rust toolchain (rustc >= 1.82, the one
# rustup installs; Debian 12's own rustc 1.63 is too old) and installs the
# Debian packages the tests need when it runs as root.
set -euo pipefail
cd "$(dirname "$0")"

need_rust="1.82"
if ! command -v cargo >/dev/null 2>&1; then
  echo "test.sh: cargo not found. Install Rust >= $need_rust with rustup (https://rustup.rs), then re-run." >&2
  exit 1
fi
have=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$need_rust" "$have" | sort -V | head -n1)" != "$need_rust" ]; then
  echo "test.sh: rustc $have is older than $need_rust; update with 'rustup update stable'." >&2
  exit 1
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy 2>/dev/null || true

step() { printf '\n== %s\n' "$*"; }
step "format (cargo fmt --check)"
cargo fmt --all --check
step "lints (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "unit, scenario and property tests (cargo test)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"

# One closing line over every test binary (cargo's own last line is often a
# doc-test binary with nothing in it).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "\nsummary: %d passed, %d failed\n", p, f }' "$log"
