#!/usr/bin/env bash
# test.sh: runs every masq test. The README's second command; .ci/run calls it.
#
#   sudo ./test.sh
#
# Set-up it does itself (deploy/setup.sh): installs the Debian packages the
# build and the tests need when they are missing, and checks the Rust
# toolchain (rustc >= 1.82, the one rustup installs; Debian 12's own rustc
# 1.63 is too old). The end-to-end tests (control/tests/e2e.rs) need root:
# they build network namespaces and attach XDP programs; without root they
# fail and say so.
set -euo pipefail
cd "$(dirname "$0")"

deploy/setup.sh

step() { printf '\n== %s\n' "$*"; }
step "format (cargo fmt --check)"
cargo fmt --all --check
step "lints (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "docs (cargo doc, broken intra-doc links denied)"
RUSTDOCFLAGS="-D rustdoc::broken_intra_doc_links -D rustdoc::private_intra_doc_links" \
  cargo doc --workspace --no-deps --locked -q
step "alert rules (promtool check rules, promtool test rules)"
promtool check config deploy/prometheus/masq.yml
promtool test rules deploy/prometheus/tests/*.yml
step "unit, scenario and property tests (cargo test)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# (control/tests/scaleout.rs, three one-worker boxes behind ECMP with FRR,
# runs in this pass only.)

# Every end-to-end scenario holds with several workers too (issue 18): the
# lab's links get two queues and masq two workers on cores 0 and 1
# (control/tests/lab/mod.rs reads MASQ_LAB_WORKERS).
step "end-to-end tests again with two workers (MASQ_LAB_WORKERS=2)"
MASQ_LAB_WORKERS=2 cargo test --locked -p control --test e2e --test api --test boundary --test control_tls --test protocols --test static_nat --test fragments_lab --test ftp --test prometheus --test capabilities --test deterministic_lab --test nat_log --test whois_live --test storm --test gre_tunnel 2>&1 | tee -a "$log"
# The HA pair's lab (issue 16) with two workers in each box.
MASQ_LAB_WORKERS=2 cargo test --locked -p control --test ha 2>&1 | tee -a "$log"

# One closing line over every test binary (cargo's own last line is often a
# doc-test binary with nothing in it).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "\nsummary: %d passed, %d failed\n", p, f }' "$log"
