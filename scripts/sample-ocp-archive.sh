#!/usr/bin/env bash
# Writes a small OpenShift Insights Operator archive (config/id, a failing cluster update, two
# cluster operators) for trying the rules on a local file:
#   scripts/sample-ocp-archive.sh /tmp/ocp.tar.gz && intake pipeline process /tmp/ocp.tar.gz
set -euo pipefail
out=${1:?usage: scripts/sample-ocp-archive.sh OUT.tar.gz}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/config/clusteroperator"
echo "c25da893-5ba1-4229-9432-c8ec9334c4a0" >"$work/config/id"
cat >"$work/config/version.json" <<'JSON'
{"spec": {"channel": "stable-4.14"}, "status": {"desired": {"version": "4.14.3"}, "conditions": [
  {"type": "Failing", "status": "True", "reason": "ClusterOperatorDegraded", "message": "Cluster operator etcd is degraded"}]}}
JSON
for name in etcd dns; do
  cat >"$work/config/clusteroperator/$name.json" <<JSON
{"metadata": {"name": "$name"}, "status": {"conditions": [
  {"type": "Degraded", "status": "False"}, {"type": "Available", "status": "True"},
  {"type": "Upgradeable", "status": "True"}]}}
JSON
done
tar -czf "$out" -C "$work" config
echo "$out"
