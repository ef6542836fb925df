#!/usr/bin/env bash
# A real two-node Slurm 22.05 cluster on this one machine, for the slurm runtime's tests.
# Idempotent: a second run with the cluster up only checks it and prints the same lines.
# On success it prints KEY=VALUE lines (stdout; also written to $ROOT/env); everything else goes
# to stderr. On failure: one line naming the log to read, exit status 1.
#
#   eval "$(bash .ci/slurm-setup.sh | sed 's/^/export /')"; sinfo
#   bash .ci/slurm-stop.sh            # stops every daemon this started
#
# Needs root and apt (Debian 12). See /work/shared/runtimes.md section 3. What it runs:
#  - munged on its own socket and key, MariaDB on its own datadir/socket/port (127.0.0.1:3307),
#    slurmdbd (accounting, for sacct), slurmctld, one slurmd per node, slurmrestd (JWT, as the
#    non-root user neuro-slurmrest, SLURM_JWT=daemon, 127.0.0.1:6820);
#  - nodes n1, n2: each slurmd runs in its own network namespace (nsl-n1, nsl-n2) joined to the
#    host by a veth pair on the bridge nslbr0 (host 10.77.0.1, nodes 10.77.0.11, .12), so a job
#    listening on a port is reachable at its node's NodeAddr, and the same port on both nodes
#    does not clash. Why namespaces and not 127.0.0.x addresses with a Port= per node: Debian's
#    slurmd is built without --enable-multiple-slurmd (libslurmfull has the "Duplicated
#    NodeHostName" check), and with loopback aliases every job would listen on every "node".
#    slurmd is entered into its namespace with nsenter --net only: `ip netns exec` remounts
#    /sys and would hide the cgroup hierarchies Slurm's cgroup plugins need.
#  - each node: CPUs=2, RealMemory=4000 (the machine has 2 cores in all: both nodes share them;
#    SlurmdParameters=config_overrides keeps a smaller CI machine's nodes from being drained).
# Everything it writes lives under $NEURO_SLURM_ROOT (default /var/lib/neuro-slurm): etc/ (the
# configuration: SLURM_CONF), state/, spool/<node>/, log/, run/ (pid files), jobs/ (a 1777
# directory the "nodes" share: here it is the same filesystem), munge/, mysql/.
set -euo pipefail

ROOT="${NEURO_SLURM_ROOT:-/var/lib/neuro-slurm}"
NET="${NEURO_SLURM_NET:-10.77.0}"      # /24: .1 the host (slurmctld), .11, .12 ... the nodes
NODES=(n1 n2)
CLUSTER=neuro
PARTITION=debug
REST_PORT=6820
REST_USER=neuro-slurmrest
DB_PORT=3307
CONF="$ROOT/etc/slurm.conf"
LIB=/usr/lib/x86_64-linux-gnu/slurm-wlm
export SLURM_CONF="$CONF"

say() { echo "slurm-setup: $*" >&2; }
fail() {  # fail LOG MESSAGE: the log's last lines, then one clear line
    if [ -f "$1" ]; then tail -n 15 "$1" | sed 's/^/  | /' >&2; fi
    echo "slurm-setup: $2 (read $1)" >&2
    exit 1
}
wait_for() {  # wait_for SECONDS CMD...: poll CMD every 0.1 s until it succeeds
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        # WATCH_PID=N wait_for ...: give up as soon as that process has exited
        if [ -n "${WATCH_PID:-}" ] && ! kill -0 "$WATCH_PID" 2>/dev/null; then return 1; fi
        sleep 0.1
    done
}
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
node_addr() { local i; for i in "${!NODES[@]}"; do if [ "${NODES[$i]}" = "$1" ]; then echo "$NET.$((11 + i))"; fi; done; }

if [ "$(id -u)" != 0 ]; then
    say "needs root (apt-get, network namespaces, cgroups)"; exit 1
fi

# -- packages ---------------------------------------------------------------------------------
need=()
for cmd in slurmctld slurmd slurmdbd slurmrestd sbatch munged mariadbd mariadb-install-db runc nsenter ip; do
    command -v "$cmd" >/dev/null 2>&1 || need+=("$cmd")
done
[ -f "$LIB/auth_jwt.so" ] || need+=(slurm-wlm-jwt-plugin)
[ -f "$LIB/accounting_storage_mysql.so" ] || need+=(slurm-wlm-mysql-plugin)
if [ "${#need[@]}" -gt 0 ]; then
    say "installing Slurm (missing: ${need[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends \
        slurm-wlm slurmctld slurmd slurm-client munge slurmrestd slurm-wlm-jwt-plugin \
        slurmdbd slurm-wlm-mysql-plugin mariadb-server runc iproute2 util-linux >&2
fi
id "$REST_USER" >/dev/null 2>&1 || useradd -r -M -s /usr/sbin/nologin "$REST_USER"

# -- directories and secrets ------------------------------------------------------------------
mkdir -p "$ROOT"/{etc,state,spool,log,run,jobs,munge,mysql}
chmod 755 "$ROOT" "$ROOT/etc" "$ROOT/spool" "$ROOT/log" "$ROOT/run"
chmod 1777 "$ROOT/jobs"
chown slurm:slurm "$ROOT/state" "$ROOT/log" "$ROOT/run"
chown munge:munge "$ROOT/munge"; chmod 755 "$ROOT/munge"
chown mysql:mysql "$ROOT/mysql"; chmod 750 "$ROOT/mysql"
for n in "${NODES[@]}"; do mkdir -p "$ROOT/spool/$n"; done
if [ ! -s "$ROOT/munge/munge.key" ]; then
    dd if=/dev/urandom of="$ROOT/munge/munge.key" bs=1024 count=1 status=none
fi
chown munge:munge "$ROOT/munge/munge.key"; chmod 400 "$ROOT/munge/munge.key"
if [ ! -s "$ROOT/state/jwt_hs256.key" ]; then
    dd if=/dev/urandom of="$ROOT/state/jwt_hs256.key" bs=32 count=1 status=none
fi
chown slurm:slurm "$ROOT/state/jwt_hs256.key"; chmod 600 "$ROOT/state/jwt_hs256.key"
if [ ! -s "$ROOT/etc/db.password" ]; then
    head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$ROOT/etc/db.password"
fi
chmod 600 "$ROOT/etc/db.password"
DB_PASS=$(cat "$ROOT/etc/db.password")

# -- configuration ----------------------------------------------------------------------------
MUNGE_SOCK="$ROOT/munge/munge.socket"
CTLD_HOST="$(hostname -s)"
node_lines=""
for n in "${NODES[@]}"; do
    node_lines+="NodeName=$n NodeHostname=$n NodeAddr=$(node_addr "$n") CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=4000 State=UNKNOWN"$'\n'
done
nodelist=$(IFS=,; echo "${NODES[*]}")
SLURM_CONF_TEXT="# written by neuro .ci/slurm-setup.sh
ClusterName=$CLUSTER
SlurmctldHost=$CTLD_HOST($NET.1)
SlurmUser=slurm
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
CredType=cred/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$ROOT/state/jwt_hs256.key
StateSaveLocation=$ROOT/state
SlurmdSpoolDir=$ROOT/spool/%n
SlurmctldPidFile=$ROOT/run/slurmctld.pid
SlurmdPidFile=$ROOT/run/slurmd-%n.pid
SlurmctldLogFile=$ROOT/log/slurmctld.log
SlurmdLogFile=$ROOT/log/slurmd-%n.log
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,default_queue_depth=100
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup
JobAcctGatherType=jobacct_gather/cgroup
JobAcctGatherFrequency=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
AccountingStoragePass=$MUNGE_SOCK
MpiDefault=none
ReturnToService=2
KillWait=2
MinJobAge=300
InactiveLimit=0
${node_lines}PartitionName=$PARTITION Nodes=$nodelist Default=YES MaxTime=INFINITE State=UP"
CGROUP_CONF_TEXT="# written by neuro .ci/slurm-setup.sh
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
ConstrainCores=yes
ConstrainRAMSpace=yes
ConstrainSwapSpace=yes
ConstrainDevices=no"
DBD_CONF_TEXT="# written by neuro .ci/slurm-setup.sh
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$ROOT/state/jwt_hs256.key
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
LogFile=$ROOT/log/slurmdbd.log
PidFile=$ROOT/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db"
changed=""
write_conf() {  # write_conf FILE TEXT MODE OWNER
    if [ "$(cat "$1" 2>/dev/null)" != "$2" ]; then
        printf '%s\n' "$2" > "$1"; changed=1; say "wrote $1"
    fi
    chmod "$3" "$1"; chown "$4" "$1"
}
write_conf "$CONF" "$SLURM_CONF_TEXT" 644 root:root
write_conf "$ROOT/etc/cgroup.conf" "$CGROUP_CONF_TEXT" 644 root:root
write_conf "$ROOT/etc/slurmdbd.conf" "$DBD_CONF_TEXT" 600 slurm:slurm
if [ -n "$changed" ] && alive "$ROOT/run/slurmctld.pid"; then
    say "the configuration changed: restarting the cluster"
    NEURO_SLURM_ROOT="$ROOT" bash "$(dirname "$0")/slurm-stop.sh" >&2
fi

# -- munge ------------------------------------------------------------------------------------
munge_ok() { munge -S "$MUNGE_SOCK" -n | unmunge -S "$MUNGE_SOCK"; }
if ! munge_ok >/dev/null 2>&1; then
    say "starting munged ($MUNGE_SOCK)"
    runuser -u munge -- /usr/sbin/munged --socket="$MUNGE_SOCK" --key-file="$ROOT/munge/munge.key" \
        --pid-file="$ROOT/munge/munged.pid" --log-file="$ROOT/munge/munged.log" \
        --seed-file="$ROOT/munge/munged.seed" </dev/null >>"$ROOT/log/munged.out" 2>&1 \
        || fail "$ROOT/log/munged.out" "munged did not start"
    wait_for 10 munge_ok || fail "$ROOT/munge/munged.log" "munged does not answer on $MUNGE_SOCK"
fi

# -- MariaDB and slurmdbd ---------------------------------------------------------------------
DB_SOCK="$ROOT/mysql/mysqld.sock"
db() { mariadb --socket="$DB_SOCK" -u root "$@"; }
if ! mariadb-admin --socket="$DB_SOCK" -u root ping >/dev/null 2>&1; then
    if [ ! -d "$ROOT/mysql/mysql" ]; then
        say "creating the accounting database ($ROOT/mysql)"
        mariadb-install-db --user=mysql --datadir="$ROOT/mysql" --auth-root-authentication-method=socket \
            --skip-test-db >>"$ROOT/log/mariadb.log" 2>&1 || fail "$ROOT/log/mariadb.log" "mariadb-install-db failed"
    fi
    say "starting mariadbd (127.0.0.1:$DB_PORT)"
    setsid nohup /usr/sbin/mariadbd --user=mysql --datadir="$ROOT/mysql" --socket="$DB_SOCK" \
        --pid-file="$ROOT/mysql/mysqld.pid" --port="$DB_PORT" --bind-address=127.0.0.1 \
        --log-error="$ROOT/log/mariadb.log" --skip-log-bin --innodb-buffer-pool-size=64M \
        </dev/null >>"$ROOT/log/mariadb.log" 2>&1 &
    WATCH_PID=$! wait_for 60 mariadb-admin --socket="$DB_SOCK" -u root ping || fail "$ROOT/log/mariadb.log" "mariadbd did not start"
fi
if ! db -N -e "SELECT 1 FROM mysql.user WHERE user='slurm' AND host='127.0.0.1'" 2>/dev/null | grep -q 1; then
    db -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
        CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" || fail "$ROOT/log/mariadb.log" "could not create the slurm database user"
fi
if ! alive "$ROOT/run/slurmdbd.pid"; then
    say "starting slurmdbd"
    /usr/sbin/slurmdbd </dev/null >>"$ROOT/log/slurmdbd.log" 2>&1 || fail "$ROOT/log/slurmdbd.log" "slurmdbd did not start"
fi
wait_for 30 sacctmgr -n list cluster || fail "$ROOT/log/slurmdbd.log" "slurmdbd does not answer (sacctmgr list cluster)"
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >&2 || fail "$ROOT/log/slurmdbd.log" "sacctmgr could not add cluster $CLUSTER"
fi

# -- the nodes' network -----------------------------------------------------------------------
if ! ip link show nslbr0 >/dev/null 2>&1; then
    say "creating bridge nslbr0 ($NET.1/24)"
    ip link add nslbr0 type bridge
    ip addr add "$NET.1/24" dev nslbr0
fi
ip link set nslbr0 up
for n in "${NODES[@]}"; do
    ns="nsl-$n"
    if ! ip netns list | grep -qw "$ns"; then
        say "creating network namespace $ns ($(node_addr "$n"))"
        ip netns add "$ns"
    fi
    if ! ip link show "$ns-h" >/dev/null 2>&1; then
        ip link add "$ns-h" type veth peer name eth0 netns "$ns"
        ip link set "$ns-h" master nslbr0 up
        ip -n "$ns" addr add "$(node_addr "$n")/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
        ip -n "$ns" route add default via "$NET.1"
    fi
done

# -- slurmctld and the slurmds ----------------------------------------------------------------
ctld_ok() { scontrol ping | grep -q 'is UP'; }
if ! alive "$ROOT/run/slurmctld.pid"; then
    say "starting slurmctld ($NET.1)"
    /usr/sbin/slurmctld </dev/null >>"$ROOT/log/slurmctld.log" 2>&1 || fail "$ROOT/log/slurmctld.log" "slurmctld did not start"
fi
wait_for 30 ctld_ok || fail "$ROOT/log/slurmctld.log" "slurmctld does not answer (scontrol ping)"
for n in "${NODES[@]}"; do
    if ! alive "$ROOT/run/slurmd-$n.pid"; then
        say "starting slurmd $n ($(node_addr "$n"), namespace nsl-$n)"
        nsenter --net="/run/netns/nsl-$n" /usr/sbin/slurmd -N "$n" </dev/null >>"$ROOT/log/slurmd-$n.log" 2>&1 \
            || fail "$ROOT/log/slurmd-$n.log" "slurmd $n did not start"
    fi
done
nodes_idle() {
    local states; states=$(sinfo -h -N -p "$PARTITION" -o '%N %t' | sort -u)
    for n in "${NODES[@]}"; do grep -Eq "^$n (idle|mix|alloc)$" <<<"$states" || return 1; done
}
for n in "${NODES[@]}"; do
    # a node left down/drained by an earlier run (slurmd killed) comes back once its slurmd is up
    if sinfo -h -n "$n" -o '%t' | grep -Eq 'down|drain'; then
        wait_for 10 bash -c "sinfo -h -n $n -o '%t' | grep -vq '\*'" || true
        scontrol update nodename="$n" state=resume 2>/dev/null || true
    fi
done
wait_for 30 nodes_idle || fail "$ROOT/log/slurmctld.log" "nodes ${NODES[*]} are not idle: $(sinfo -h -N -o '%N=%t' | tr '\n' ' ')"

# -- slurmrestd -------------------------------------------------------------------------------
REST="http://127.0.0.1:$REST_PORT"
rest_ok() {
    local tok; tok=$(scontrol token username=root lifespan=60 | sed 's/^SLURM_JWT=//')
    curl -fsS --max-time 2 -H "X-SLURM-USER-NAME: root" -H "X-SLURM-USER-TOKEN: $tok" "$REST/slurm/v0.0.38/ping"
}
if ! alive "$ROOT/run/slurmrestd.pid"; then
    say "starting slurmrestd as $REST_USER ($REST)"
    # setpriv execs (runuser would fork and keep a PAM session): the pid file names slurmrestd
    setsid nohup setpriv --reuid="$REST_USER" --regid="$REST_USER" --init-groups \
        env SLURM_CONF="$CONF" SLURM_JWT=daemon \
        /usr/sbin/slurmrestd -a rest_auth/jwt "127.0.0.1:$REST_PORT" \
        </dev/null >>"$ROOT/log/slurmrestd.log" 2>&1 &
    echo $! > "$ROOT/run/slurmrestd.pid"
fi
wait_for 30 rest_ok || fail "$ROOT/log/slurmrestd.log" "slurmrestd does not answer on $REST/slurm/v0.0.38/ping"

# -- the lines the tests and .ci/run export ---------------------------------------------------
addrs=""
for n in "${NODES[@]}"; do addrs+="${addrs:+,}$n=$(node_addr "$n")"; done
ENV_TEXT="SLURM_CONF=$CONF
NEURO_SLURM_ROOT=$ROOT
NEURO_SLURM_REST=$REST
NEURO_SLURM_NODES=$nodelist
NEURO_SLURM_NODE_ADDRS=$addrs
NEURO_SLURM_PARTITION=$PARTITION
NEURO_SLURM_JOBS_DIR=$ROOT/jobs
NEURO_SLURM_LOGIN_ADDR=$NET.1"
[ "$(cat "$ROOT/env" 2>/dev/null)" = "$ENV_TEXT" ] || printf '%s\n' "$ENV_TEXT" > "$ROOT/env"
printf '%s\n' "$ENV_TEXT"
