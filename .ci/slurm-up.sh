#!/bin/bash
# CI: install and start a two-node SLURM (Debian 12's slurm-wlm 22.05) on this one machine. Run as root.
# From ../shared/reference/slurm-two-nodes.sh (measured: up in ~3 s once installed). Each node, n1 and
# n2, is a network namespace (fipo-n1, fipo-n2) with its own address on a private bridge (fipobr,
# 198.18.7.0/24, a range reserved for benchmarks), its own hostname (UTS namespace) and /etc/hosts
# (mount namespace); slurmctld runs in the root namespace on the bridge. The filesystem is shared,
# as NFS is on a cluster. Every SLURM test of CI runs on it: a one-node job lands on one of the two
# nodes, so one cluster serves them all (it replaced the one-node cluster on loopback).
# Idempotent: run again, it starts what is not running. .ci/slurm-node.sh N (re)starts one node's
# slurmd; .ci/slurm-down.sh stops it all.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command -v slurmd >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge iproute2 util-linux >/dev/null; }
B=${SLURM_CI_DIR:-/tmp/fipo-slurm2}; NET=${SLURM_CI_NET:-198.18.7}; N=${SLURM_CI_NODES:-2}
mkdir -p $B/{etc,state,log,run}
ip link show fipobr >/dev/null 2>&1 || { ip link add fipobr type bridge; ip addr add $NET.254/24 dev fipobr; ip link set fipobr up; }
H=$(hostname -s)
hosts="127.0.0.1 localhost
$NET.254 $H"
for i in $(seq $N); do hosts="$hosts
$NET.$i n$i"; done
printf '%s\n' "$hosts" > $B/etc/hosts
for i in $(seq $N); do
  ns=fipo-n$i
  ip netns list | grep -qw $ns || {
    ip netns add $ns
    ip link add veth-n$i type veth peer name eth0 netns $ns
    ip link set veth-n$i master fipobr up
    ip -n $ns addr add $NET.$i/24 dev eth0; ip -n $ns link set eth0 up; ip -n $ns link set lo up
    ip -n $ns route add default via $NET.254 2>/dev/null || true
  }
  mkdir -p $B/spool/n$i
done
# CPUs=2 per node as in the reference: a CPU job of the tiny recipe asks for 2 (one worker,
# train.sbatch.j2's --cpus-per-task), a whole node. Gres=gpu:2 backed by /dev/null: the stand-in
# tests ask for 2 GPUs per node (a count without device files drains the node).
nodes=""; for i in $(seq $N); do nodes="$nodes
NodeName=n$i NodeAddr=$NET.$i NodeHostname=n$i CPUs=2 RealMemory=1000 Gres=gpu:2 State=UNKNOWN"; done
# Beyond the reference, from the one-node CI cluster (.ci's earlier slurm-up.sh, reference
# slurm-single-node.sh): the daemons log at info (a failed job can be read back), finished jobs are
# written to a jobcomp file (`sacct -c`, with accounting off), a job whose dependency can never be
# met is cancelled rather than left pending (kill_invalid_depend), and srun reports a failed task at
# once (Waittime=0). SlurmdTimeout is 60 s, not the reference's 30: a job's task notices a node lost
# under its trainer about 23 s after the node's last process died (measured: once slurmctld marks the
# node not responding), and must record it before slurmctld declares the node down and kills the job; with
# 30 s the node went down 36 s after the kill here and sooner on CI's machine, where the job was
# killed first (a production cluster's default is 300 s).
cat > $B/etc/slurm.conf <<CONF
ClusterName=ci2
SlurmctldHost=$H($NET.254)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6827
SlurmdPort=6828
StateSaveLocation=$B/state
SlurmdSpoolDir=$B/spool/%n
SlurmctldPidFile=$B/run/slurmctld.pid
SlurmdPidFile=$B/run/slurmd-%n.pid
SlurmctldLogFile=$B/log/slurmctld.log
SlurmdLogFile=$B/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/pgid
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$B/log/jobcomp.txt
DependencyParameters=kill_invalid_depend
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
MinJobAge=3600
KillWait=5
InactiveLimit=0
Waittime=0
SlurmctldTimeout=30
SlurmdTimeout=60
$nodes
PartitionName=debug Nodes=n[1-$N] Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
: > $B/etc/gres.conf
for i in $(seq $N); do mkdir -p $B/fakedev/n$i; for g in 0 1; do ln -sf /dev/null $B/fakedev/n$i/nvidia$g; done
  echo "NodeName=n$i Name=gpu File=$B/fakedev/n$i/nvidia[0-1]" >> $B/etc/gres.conf; done
export SLURM_CONF=$B/etc/slurm.conf
mkdir -p /run/munge && chown munge:munge /run/munge
# A munged already running (another cluster's on a developer's machine) is shared, and left running.
munge -n >/dev/null 2>&1 || { runuser -u munge -- /usr/sbin/munged && touch $B/run/munged.ours; }
if ! scontrol ping 2>/dev/null | grep -q 'is UP'; then
  # slurmctld in the root namespace needs to resolve node names too: give it the cluster's hosts file.
  unshare --mount sh -c "mount --bind $B/etc/hosts /etc/hosts && exec /usr/sbin/slurmctld -i"
  for t in $(seq 40); do scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.25; done
  scontrol ping | grep -q 'is UP' || { tail -5 $B/log/slurmctld.log; exit 1; }
fi
for i in $(seq $N); do bash "$here/slurm-node.sh" $i; done
st=; for t in $(seq 80); do st=$(sinfo -h -o %T 2>/dev/null | sort -u | tr '\n' ' '); [ "$st" = "idle " ] && break; sleep 0.25; done
[ "$st" = "idle " ] || { scontrol show node | grep -E 'NodeName|State|Reason'; tail -5 $B/log/slurmd-n*.log; exit 1; }
echo "SLURM up ($N nodes): export SLURM_CONF=$SLURM_CONF"
