#!/bin/bash
# Usage: .ci/slurm-node.sh I   (root) — start node nI's slurmd in its namespace, unless it runs.
# .ci/slurm-up.sh starts every node with it; a test that killed a node brings it back with it, as
# an administrator restarts a failed node's slurmd. With ReturnToService=2 the node is idle again
# at once.
set -euo pipefail
i=$1
B=${SLURM_CI_DIR:-/tmp/fipo-slurm2}
pidfile=$B/run/slurmd-n$i.pid
if [ -f "$pidfile" ] && [ "$(ip netns identify "$(cat "$pidfile")" 2>/dev/null)" = "fipo-n$i" ]; then
  exit 0
fi
# nsenter --net, not `ip netns exec`: the latter mounts a fresh /sys without the cgroup tree slurmd
# needs. The node's own hostname (UTS) and the cluster's /etc/hosts (mount namespace) are its own.
nsenter --net=/run/netns/fipo-n$i unshare --uts --mount sh -c \
  "hostname n$i; mount --bind $B/etc/hosts /etc/hosts; exec /usr/sbin/slurmd -N n$i"
for t in $(seq 40); do
  [ -f "$pidfile" ] && [ "$(ip netns identify "$(cat "$pidfile")" 2>/dev/null)" = "fipo-n$i" ] && exit 0
  sleep 0.25
done
echo "slurmd of n$i did not start: $(tail -3 "$B/log/slurmd-n$i.log" 2>/dev/null)" >&2
exit 1
