#!/usr/bin/env bash
# `stagecoach demo` cold and warm against a cold `cargo build --workspace`, in the same run, in
# fresh clones of this repository's HEAD with empty target directories (crates already
# downloaded). Targets: cold demo <= 1.5x the cold build; warm demo <= 10 s.
#   - `stagecoach demo` after the build: the binary that build made, in its clone (the demo's
#     own DEV build, image and tests all cold). Not `cargo run`: cargo resolves features for
#     the packages selected, so `cargo run` (stagecoach alone) after `cargo build --workspace`
#     compiles tokio-util, hyper-util, rustls… and stagecoach again (about 60 s here);
#   - the README's first command on a fresh clone: `cargo run -q -- demo`, compiling
#     stagecoach first, shown beside it (one run, after the rounds).
# ROUNDS=N repeats build, cold demo and warm demo N times, each round in a new clone, and
# prints the medians (a round takes about 6 minutes on 2 cores).
#     bash benches/demo_cold.sh        (needs a Docker engine; about 13 minutes on 2 cores)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${ROUNDS:-1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
unset CARGO_TARGET_DIR CARGO_BUILD_BUILD_DIR
cargo fetch --locked --manifest-path "$root/Cargo.toml" >/dev/null
seconds() { local start=$(date +%s.%N); "$@" >"$work/last.log" 2>&1 || { tail -20 "$work/last.log"; exit 1; }; echo "$(date +%s.%N) - $start" | bc; }
# A ratio to four places (bc truncates); printed rounded to two, the verdict takes it unrounded.
ratio() { echo "scale=4; $1 / $2" | bc; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
builds=() afters=() warms=()
for round in $(seq "$rounds"); do
  git clone -q "$root" "$work/built"
  builds+=("$(cd "$work/built" && seconds cargo build --workspace --locked)")
  afters+=("$(cd "$work/built" && seconds target/debug/stagecoach demo)")
  cp "$work/last.log" "$work/demo.log"
  warms+=("$(cd "$work/built" && seconds target/debug/stagecoach demo)")
  printf 'round %s: build %6.1f s, cold demo %6.1f s (%.2fx), warm demo %5.1f s\n' "$round" "${builds[-1]}" \
    "${afters[-1]}" "$(ratio "${afters[-1]}" "${builds[-1]}")" "${warms[-1]}"
  rm -rf "$work/built"
done
build=$(median "${builds[@]}") after=$(median "${afters[@]}") warm=$(median "${warms[@]}")
git clone -q "$root" "$work/fresh"
fresh=$(cd "$work/fresh" && seconds cargo run -q --locked -- demo)
verdict() { (( $(echo "$1 <= $2" | bc) )) && echo met || echo MISSED; }
echo "medians of $rounds round(s):"
printf 'cold cargo build --workspace:              %6.1f s\n' "$build"
printf 'cold stagecoach demo after that build:     %6.1f s (%.2fx the build; target <= 1.5x: %s)\n' "$after" \
  "$(ratio "$after" "$build")" "$(verdict "$(ratio "$after" "$build")" 1.5)"
printf 'warm stagecoach demo:                      %6.1f s (target <= 10 s: %s)\n' "$warm" "$(verdict "$warm" 10)"
printf 'cold cargo run -q -- demo on a fresh clone: %6.1f s (%.2fx the build, compiling stagecoach included; one run)\n' \
  "$fresh" "$(ratio "$fresh" "$build")"
echo "where the last cold demo's time went (its stages):"
grep -E '^DEV build|<== (build|unit-tests) ' "$work/demo.log" | sed 's/^ */  /'
