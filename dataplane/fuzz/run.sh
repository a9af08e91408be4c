#!/usr/bin/env bash
# Fuzzes each target for SECONDS (default 60), one after another, and prints
# how many executions each ran and the total.
#   dataplane/fuzz/run.sh [SECONDS] [TARGET...]      targets: parse engine config ftp ha_records
#   nice -n 19 dataplane/fuzz/run.sh 600             on a shared machine
#
# Inputs: the kept corpus (dataplane/fuzz/corpus/TARGET, in the repo), seeds
# generated from the test frame builders (examples/fuzz_seeds.rs) and, for
# `config`, the example configurations. New finds go to a scratch directory;
# at the end they are merged (libFuzzer -merge=1: only inputs that add
# coverage) with the kept corpus back into dataplane/fuzz/corpus/TARGET if
# the result fits FUZZ_CORPUS_KB (default 256 KiB of inputs; the `config`
# target's YAML corpus outgrows it and stays unkept). Commit it if it grew.
# A crash stops the run: libFuzzer's report is printed, the input is in
# dataplane/fuzz/artifacts/TARGET/ (never committed), and run.sh exits 1.
#
# Built without a sanitizer (-s none): every fuzzed path is safe Rust
# (`forbid(unsafe_code)` in the packet, engine and config code), so ASan
# finds nothing there and made runs 3-17x slower on these machines; debug
# assertions and overflow checks stay on. FUZZ_FLAGS adds cargo-fuzz flags
# (e.g. --no-trace-compares; changing them rebuilds the targets).
# cargo-fuzz needs nightly flags; on the stable toolchain here they are
# enabled with RUSTC_BOOTSTRAP=1 for the fuzz build only.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(parse engine config ftp ha_records)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
seeds=$scratch/seeds
cargo run -q -p dataplane --example fuzz_seeds -- "$seeds" >/dev/null
mkdir -p "$seeds/config" && cp config/examples/*.yaml config/src/default.yaml "$seeds/config/"

read -r -a flags <<<"-s none ${FUZZ_FLAGS:-}"
fuzz() { (cd dataplane && RUSTC_BOOTSTRAP=1 cargo fuzz run "${flags[@]}" "$@"); }

total=0
summary=()
for t in "${targets[@]}"; do
  # A frame is at most a few hundred bytes; an engine input is a sequence
  # of frames; a configuration needs room for several sections.
  case "$t" in
    parse) extra=("$seeds/parse"); max_len=512 ;;
    engine) extra=("$seeds/engine" "$seeds/engine-outside"); max_len=1024 ;;
    config) extra=("$seeds/config"); max_len=2048 ;;
    ftp) extra=("$seeds/ftp"); max_len=256 ;;
    ha_records) extra=("$seeds/ha_records"); max_len=1024 ;;
    *) echo "unknown target $t (parse, engine, config, ftp, ha_records)" >&2; exit 2 ;;
  esac
  kept=dataplane/fuzz/corpus/$t
  work=$scratch/$t
  mkdir -p "$kept" "$work"
  (cd dataplane && RUSTC_BOOTSTRAP=1 cargo fuzz build "${flags[@]}" "$t" 2>&1 | grep -E '^error' || true)
  echo "== fuzzing $t for ${secs}s (corpus $kept: $(ls "$kept" | wc -l) inputs)"
  log=$scratch/$t.log
  if ! fuzz "$t" "$work" "$PWD/$kept" "${extra[@]}" -- \
      -max_total_time="$secs" -max_len="$max_len" -print_final_stats=1 >"$log" 2>&1; then
    echo "!! $t: libFuzzer stopped on a failure; its report:" >&2
    grep -n -A40 -E '^==[0-9]+==|panicked|deadly signal' "$log" | head -n 80 >&2 || tail -n 60 "$log" >&2
    grep -E 'Test unit written to|artifact_prefix' "$log" >&2 || true
    exit 1
  fi
  grep -E '^#[0-9]+[[:space:]]+DONE' "$log" || tail -n 2 "$log"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  [ -n "$execs" ] || { echo "!! $t: no final stats in libFuzzer's output" >&2; tail -n 20 "$log" >&2; exit 1; }
  # Keep only what adds coverage: merge the finds and the kept corpus into
  # a fresh directory and put it in place of the kept one.
  merged=$scratch/$t-merged
  mkdir -p "$merged"
  fuzz "$t" "$merged" "$PWD/$kept" "$work" -- -merge=1 -max_len="$max_len" >"$scratch/$t-merge.log" 2>&1 \
    || { echo "!! $t: merge failed" >&2; tail -n 20 "$scratch/$t-merge.log" >&2; exit 1; }
  kb=$(( ($(find "$merged" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}') + 1023) / 1024 ))
  if [ "$kb" -le "${FUZZ_CORPUS_KB:-256}" ]; then
    rm -rf "$kept" && mkdir -p "$kept" && { cp "$merged"/* "$kept"/ 2>/dev/null || true; }
    kept_note="kept $(ls "$kept" | wc -l) inputs, ${kb} KiB"
  else
    kept_note="merged $(ls "$merged" | wc -l) inputs, ${kb} KiB: over FUZZ_CORPUS_KB, not kept"
  fi
  line=$(printf '%-7s %13s execs %9s exec/s  corpus: %s' "$t" "$execs" "$rate" "$kept_note")
  echo "   $line"
  summary+=("$line")
  total=$((total + execs))
done
echo "== fuzz summary ($(date -u +%Y-%m-%d), ${secs}s per target)"
printf '   %s\n' "${summary[@]}"
printf '   %-7s %13s execs\n' total "$total"
