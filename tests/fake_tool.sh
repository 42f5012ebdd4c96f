#!/usr/bin/env bash
# A stand-in for kind, helm and kubectl in the QA tests: records each call in $FAKE_LOG, and
# can be told to fail (FAKE_FAIL="helm upgrade") or to take its time (FAKE_SLEEP="kind create:2").
# Where the machine allows, it does the real thing:
# - helm template / upgrade render with the real Helm engine (tests/helm/render.py, run by
#   $FAKE_HELM_PYTHON), so a test sees what would be deployed;
# - kind keeps its clusters in $FAKE_STATE/kind-clusters, writes a kubeconfig on create, and on
#   load records the ID of the image it was handed (what the nodes would run);
# - kubectl config view is the real kubectl ($FAKE_REAL_KUBECTL).
tool=$(basename "$0")
line="$tool $*"
here=$(dirname "$(readlink -f "$0")")
state=${FAKE_STATE:-$(dirname "$FAKE_LOG")}
echo "start $(date +%s.%N) $line" >>"$FAKE_LOG"
# FAKE_SLEEP="helm upgrade:30;kind delete:2": each PREFIX:SECONDS, separated by `;`.
IFS=';' read -ra sleeps <<<"${FAKE_SLEEP:-}"
for rule in "${sleeps[@]}"; do
  if [[ "$line" == "${rule%%:*}"* ]]; then sleep "${rule##*:}"; fi
done
if [ -n "${FAKE_FAIL:-}" ] && [[ "$line" == "$FAKE_FAIL"* ]]; then
  echo "${FAKE_FAIL_MESSAGE:-$tool: told to fail}" >&2
  echo "end $(date +%s.%N) $line (failed)" >>"$FAKE_LOG"
  exit 1
fi
arg_after() { # the argument after $1 in the rest of the arguments
  local want=$1; shift
  while [ $# -gt 1 ]; do [ "$1" = "$want" ] && { echo "$2"; return; }; shift; done
}
status=0
case "$line" in
  "kind version"*) echo "kind v0.27.0 go1.23.6 linux/amd64" ;;
  # No node containers: nothing for the in-node check of a load to look at.
  "kind get nodes"*) ;;
  "kind get clusters"*) cat "$state/kind-clusters" 2>/dev/null || echo "No kind clusters found." >&2 ;;
  "kind create cluster"*)
    name=$(arg_after --name "$@")
    echo "$name" >>"$state/kind-clusters"
    kubeconfig=$(arg_after --kubeconfig "$@")
    [ -n "$kubeconfig" ] && printf 'apiVersion: v1\nkind: Config\ncurrent-context: kind-%s\nclusters:\n- name: kind-%s\n  cluster: {server: "https://127.0.0.1:6443"}\ncontexts:\n- name: kind-%s\n  context: {cluster: kind-%s, user: kind-%s}\nusers:\n- name: kind-%s\n  user: {token: fake}\n' \
      "$name" "$name" "$name" "$name" "$name" "$name" >"$kubeconfig"
    ;;
  "kind delete cluster"*)
    name=$(arg_after --name "$@")
    grep -vxF "$name" "$state/kind-clusters" >"$state/kind-clusters.new" 2>/dev/null
    mv "$state/kind-clusters.new" "$state/kind-clusters"
    ;;
  "kind load docker-image"*)
    echo "loaded $3 $(docker image inspect --format '{{.Id}}' "$3")" >>"$FAKE_LOG" || status=1
    ;;
  "kind export logs"*) mkdir -p "$3" && echo "node logs" >"$3/docker-info.txt" ;;
  "helm template"* | "helm upgrade"*)
    if [ -z "${FAKE_HELM_PYTHON:-}" ]; then
      echo "helm: no Helm engine (FAKE_HELM_PYTHON is not set)" >&2
      status=1
    else
      "$FAKE_HELM_PYTHON" "$here/helm/render.py" "$@" || status=$?
    fi
    ;;
  "kubectl config view"*)
    if [ -z "${FAKE_REAL_KUBECTL:-}" ]; then
      echo "kubectl: no real kubectl (FAKE_REAL_KUBECTL is not set)" >&2
      status=1
    else
      "$FAKE_REAL_KUBECTL" "$@" || status=$?
    fi
    ;;
  "kubectl "*"version --output=json"*) echo '{"serverVersion": {"gitVersion": "v1.33.1"}}' ;;
  "kubectl "*"custom-columns"*) printf 'bitcoin   bitcoin-operator-7d9f   false\nkube-system   coredns-1   true\n' ;;
  "kubectl "*) echo "kubectl output for: $*" ;;
  "helm status"*) echo "STATUS: failed" ;;
  *) echo "$tool: ok" ;;
esac
if [ "$status" -ne 0 ]; then
  echo "end $(date +%s.%N) $line (failed)" >>"$FAKE_LOG"
  exit "$status"
fi
echo "end $(date +%s.%N) $line" >>"$FAKE_LOG"
