#!/usr/bin/env bash
# A stand-in for kind, helm and kubectl in the QA tests: records each call in $FAKE_LOG, and
# can be told to fail (FAKE_FAIL="helm upgrade") or to take its time (FAKE_SLEEP="kind create:2").
tool=$(basename "$0")
line="$tool $*"
echo "start $(date +%s.%N) $line" >>"$FAKE_LOG"
if [ -n "${FAKE_SLEEP:-}" ] && [[ "$line" == "${FAKE_SLEEP%%:*}"* ]]; then
  sleep "${FAKE_SLEEP##*:}"
fi
if [ -n "${FAKE_FAIL:-}" ] && [[ "$line" == "$FAKE_FAIL"* ]]; then
  echo "$tool: told to fail" >&2
  echo "end $(date +%s.%N) $line (failed)" >>"$FAKE_LOG"
  exit 1
fi
case "$line" in
  "kind version"*) echo "kind v0.27.0 go1.23.6 linux/amd64" ;;
  "kind export logs"*) mkdir -p "$3" && echo "node logs" >"$3/docker-info.txt" ;;
  "kubectl "*"custom-columns"*) printf 'bitcoin   bitcoin-operator-7d9f   false\nkube-system   coredns-1   true\n' ;;
  "kubectl "*) echo "kubectl output for: $*" ;;
  "helm status"*) echo "STATUS: failed" ;;
  *) echo "$tool: ok" ;;
esac
echo "end $(date +%s.%N) $line" >>"$FAKE_LOG"
