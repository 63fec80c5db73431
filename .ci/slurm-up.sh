#!/bin/bash
# CI: install and start a one-node SLURM (Debian 12's 22.05) on loopback, with 8 fake GPUs. Run as root.
# From ../shared/reference/slurm-single-node.sh (measured: ~15 s once installed).
# WITH_DBD=1 additionally starts MariaDB + slurmdbd so that plain `sacct` works.
set -euo pipefail
B=${SLURM_CI_DIR:-/tmp/fipo-slurm}; H=$(hostname -s); N=$(nproc); WITH_DBD=${WITH_DBD:-0}
pk="slurmctld slurmd slurm-client munge"; [ "$WITH_DBD" = 1 ] && pk="$pk slurmdbd mariadb-server"
if ! command -v slurmctld >/dev/null || { [ "$WITH_DBD" = 1 ] && ! command -v slurmdbd >/dev/null; }; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pk >/dev/null
fi
mkdir -p $B/{etc,state,spool/slurmd-$H,log,run,fakedev}
for i in 0 1 2 3 4 5 6 7; do ln -sf /dev/null $B/fakedev/nvidia$i; done
if [ "$WITH_DBD" = 1 ]; then
  ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux"
else
  ACCT="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi
cat > $B/etc/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$B/state
SlurmdSpoolDir=$B/spool/slurmd-%n
SlurmctldPidFile=$B/run/slurmctld.pid
SlurmdPidFile=$B/run/slurmd-%n.pid
SlurmctldLogFile=$B/log/slurmctld.log
SlurmdLogFile=$B/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/pgid
TaskPlugin=task/none
$ACCT
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
SlurmdTimeout=30
NodeName=$H NodeAddr=127.0.0.1 CPUs=$N RealMemory=1000 Gres=gpu:8 State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
cat > $B/etc/gres.conf <<CONF
AutoDetect=off
NodeName=$H Name=gpu File=$B/fakedev/nvidia[0-7]
CONF
export SLURM_CONF=$B/etc/slurm.conf
mkdir -p /run/munge && chown munge:munge /run/munge
munge -n >/dev/null 2>&1 || runuser -u munge -- /usr/sbin/munged
if [ "$WITH_DBD" = 1 ]; then
  mkdir -p $B/mysql $B/mysqlrun && chown mysql:mysql $B/mysql $B/mysqlrun
  [ -d $B/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=$B/mysql --auth-root-authentication-method=socket >$B/log/mariadb-install.log 2>&1
  runuser -u mysql -- /usr/sbin/mariadbd --datadir=$B/mysql --socket=$B/mysqlrun/mysqld.sock \
     --pid-file=$B/mysqlrun/mysqld.pid --bind-address=127.0.0.1 --port=3306 \
     --log-error=$B/mysqlrun/mariadb.err --innodb-buffer-pool-size=64M </dev/null >/dev/null 2>&1 &
  for i in $(seq 120); do mariadb -S $B/mysqlrun/mysqld.sock -e 'select 1' >/dev/null 2>&1 && break; sleep 0.25; done
  mariadb -S $B/mysqlrun/mysqld.sock -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmpw'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
  cat > $B/etc/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
LogFile=$B/log/slurmdbd.log
PidFile=$B/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
CONF
  chmod 600 $B/etc/slurmdbd.conf
  /usr/sbin/slurmdbd
  for i in $(seq 80); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.25; done
  sacctmgr -i add cluster ci >/dev/null 2>&1 || true
fi
/usr/sbin/slurmctld -i
for i in $(seq 40); do scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.25; done
scontrol ping | grep -q 'is UP' || { tail -5 $B/log/slurmctld.log; exit 1; }
/usr/sbin/slurmd
st=; for i in $(seq 80); do st=$(sinfo -h -N -o %T 2>/dev/null || true); [ "$st" = idle ] && break; sleep 0.25; done
[ "$st" = idle ] || { scontrol show node | grep -E 'State|Reason'; tail -5 $B/log/slurmd-$H.log; exit 1; }
echo "SLURM up: export SLURM_CONF=$SLURM_CONF"
