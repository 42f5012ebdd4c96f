#!/usr/bin/env bash
# `stagecoach demo` cold and warm against a cold `cargo build --workspace`, in the same run, each
# in a fresh clone of this repository's HEAD with an empty target directory (crates already
# downloaded). Targets: cold demo <= 1.5x the cold build; warm demo <= 10 s.
#     bash benches/demo_cold.sh        (needs a Docker engine; takes about 10 minutes on 2 cores)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
unset CARGO_TARGET_DIR CARGO_BUILD_BUILD_DIR
cargo fetch --locked --manifest-path "$root/Cargo.toml" >/dev/null
seconds() { local start=$(date +%s.%N); "$@" >"$work/last.log" 2>&1 || { tail -20 "$work/last.log"; exit 1; }; echo "$(date +%s.%N) - $start" | bc; }
git clone -q "$root" "$work/build" && git clone -q "$root" "$work/demo"
build=$(cd "$work/build" && seconds cargo build --workspace --locked)
cold=$(cd "$work/demo" && seconds cargo run -q --locked -- demo)
warm=$(cd "$work/demo" && seconds cargo run -q --locked -- demo)
ratio=$(echo "scale=2; $cold / $build" | bc)
printf 'cold cargo build --workspace: %6.1f s\n' "$build"
printf 'cold stagecoach demo:         %6.1f s (%sx the build; target <= 1.5x: %s)\n' "$cold" "$ratio" \
  "$( (( $(echo "$ratio <= 1.5" | bc) )) && echo met || echo MISSED)"
printf 'warm stagecoach demo:         %6.1f s (target <= 10 s: %s)\n' "$warm" \
  "$( (( $(echo "$warm <= 10" | bc) )) && echo met || echo MISSED)"
