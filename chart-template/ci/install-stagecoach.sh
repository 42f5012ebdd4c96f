#!/bin/sh
# Installs the stagecoach this chart was built with: the DEV repository at the chart's
# appVersion commit (or at STAGECOACH_REV, a commit or tag), never whatever DEV's main holds
# today. DEV_TOKEN, when set, reads a private DEV repository; it reaches git only, through
# GIT_ASKPASS, and never appears in a URL, a log line or a git config file.
set -eu
rev="${STAGECOACH_REV:-$(sed -n 's/^appVersion: *"\{0,1\}\([0-9a-f]\{40\}\)"\{0,1\} *$/\1/p' Chart.yaml)}"
if [ -z "$rev" ]; then
  echo "Chart.yaml has no appVersion commit (40 hex digits); set STAGECOACH_REV to a commit or tag" >&2
  exit 1
fi
url="${STAGECOACH_DEV_URL:?set STAGECOACH_DEV_URL to the DEV repository}"
if [ -n "${DEV_TOKEN:-}" ]; then
  askpass="$(mktemp)"
  trap 'rm -f "$askpass"' EXIT
  printf '#!/bin/sh\nprintf "%%s\\n" "$DEV_TOKEN"\n' >"$askpass"
  chmod 700 "$askpass"
  export GIT_ASKPASS="$askpass" CARGO_NET_GIT_FETCH_WITH_CLI=true
  case "$url" in https://*@*) ;; https://*) url="https://x-access-token@${url#https://}" ;; esac
fi
echo "installing stagecoach from $url at $rev"
cargo install --locked --git "$url" --rev "$rev" stagecoach
