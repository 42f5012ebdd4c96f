#!/usr/bin/env bash
# The blog series' DEV-stage steps as a script (the baseline of benches/flow.rs): docker build,
# tag and push, then clone the QA repository, sed the tag and versions in, commit and push.
# usage: seed_flow.sh CONTEXT REPOSITORY TAG QA_URL
set -euo pipefail
context=$1 repository=$2 tag=$3 qa=$4
docker build -q -f "$context/operator/Dockerfile" -t "$repository:$tag" "$context" >/dev/null
docker tag "$repository:$tag" "$repository:latest"
docker push -q "$repository:$tag" >/dev/null
docker push -q "$repository:latest" >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$qa" "$work/qa"
cd "$work/qa"
sed -i "s/^  tag: .*/  tag: $tag/" values.yaml
sed -i "s/^version: .*/version: 0.1.1-dev$tag/" Chart.yaml
sed -i "s/^appVersion: .*/appVersion: $tag/" Chart.yaml
git -c user.name=seed -c user.email=seed@localhost commit -qam "Update tag to $tag"
git push -q origin HEAD:main
