#!/usr/bin/env bash
# Install and configure Podman, build the local test image and serve Podman's Docker-compatible
# API on a unix socket (for the docker runtime and its tests). Idempotent: a second run only
# checks. Prints the socket path (one line on stdout); everything else goes to stderr.
#
#   bash .ci/podman-setup.sh            # -> /run/neuro-podman.sock
#   NEURO_DOCKER_HOST=unix://$(bash .ci/podman-setup.sh) python -m pytest tests/server/runtime_docker
#
# Needs root and apt (Debian 12).  What it does (see /work/shared/runtimes.md section 1):
#  - apt-get install podman runc conmon + CNI plugins (dnsname: job names on their owner's
#    network), busybox-static (no recommends);
#  - /etc/containers/containers.conf: rlimits at the hard limits (no CAP_SYS_RESOURCE here: the
#    default nofile/nproc of 1048576 make every container fail), OCI runtime runc;
#  - localhost/busybox:latest, imported from busybox-static (there is no image registry here);
#  - `podman system service --time=0 unix://$SOCK` in the background unless it already answers.
set -euo pipefail

SOCK="${NEURO_PODMAN_SOCK:-/run/neuro-podman.sock}"
IMAGE="localhost/busybox:latest"
LOG="${NEURO_PODMAN_LOG:-/tmp/neuro-podman-service.log}"

say() { echo "podman-setup: $*" >&2; }

ping_ok() {
    [ -S "$SOCK" ] && curl -fsS --max-time 2 --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1
}

if [ "$(id -u)" != 0 ]; then
    say "needs root (apt-get, /etc/containers)"; exit 1
fi

# -- packages ---------------------------------------------------------------------------------
need=()
for cmd in podman runc conmon curl; do
    command -v "$cmd" >/dev/null 2>&1 || need+=("$cmd")
done
[ -x /bin/busybox ] || need+=(busybox)
[ -d /usr/lib/cni ] || need+=(cni)
[ -x /usr/lib/cni/dnsname ] || need+=(dnsname)   # names of jobs on their owner's network
if [ "${#need[@]}" -gt 0 ]; then
    say "installing podman (missing: ${need[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends \
        podman runc conmon containernetworking-plugins iptables catatonit uidmap \
        fuse-overlayfs slirp4netns golang-github-containers-common busybox-static curl \
        golang-github-containernetworking-plugin-dnsname \
        ca-certificates >&2
fi

# -- configuration ----------------------------------------------------------------------------
CONF=/etc/containers/containers.conf
WANT_CONF='# written by neuro .ci/podman-setup.sh
[containers]
# no CAP_SYS_RESOURCE here: keep rlimits at/below the hard limits (ulimit -Hn = 20000)
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"'
if [ "$(cat "$CONF" 2>/dev/null)" != "$WANT_CONF" ]; then
    if [ -s "$CONF" ] && ! grep -q 'neuro .ci/podman-setup.sh' "$CONF"; then
        cp "$CONF" "$CONF.before-neuro"
        say "kept the previous $CONF as $CONF.before-neuro"
    fi
    mkdir -p /etc/containers
    printf '%s\n' "$WANT_CONF" > "$CONF"
    say "wrote $CONF"
    if ping_ok; then  # a running service read the old configuration
        say "restarting the API service for the new configuration"
        pkill_pid=$(cat /run/neuro-podman.pid 2>/dev/null || true)
        [ -n "$pkill_pid" ] && kill "$pkill_pid" 2>/dev/null || true
        for _ in $(seq 50); do ping_ok || break; sleep 0.1; done
    fi
fi

# -- the test image ---------------------------------------------------------------------------
if ! podman image exists "$IMAGE"; then
    say "building $IMAGE from busybox-static"
    R=$(mktemp -d /tmp/neuro-bbroot.XXXXXX)
    mkdir -p "$R/bin" "$R/etc" "$R/proc" "$R/sys" "$R/dev" "$R/tmp" "$R/root" "$R/www"
    cp /bin/busybox "$R/bin/busybox"
    for a in $("$R/bin/busybox" --list); do
        [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"
    done
    echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
    echo 'root:x:0:' > "$R/etc/group"
    echo 'hello from the job' > "$R/www/hello.txt"
    chmod 1777 "$R/tmp"
    tar -C "$R" -cf "$R.tar" .
    podman import --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' "$R.tar" "$IMAGE" >&2
    rm -rf "$R" "$R.tar"
fi

# -- the API service --------------------------------------------------------------------------
if ! ping_ok; then
    say "starting podman system service on $SOCK (log: $LOG)"
    rm -f "$SOCK"
    mkdir -p "$(dirname "$SOCK")"
    # setsid + nohup: the service outlives this script and the shell that ran it
    setsid nohup podman system service --time=0 "unix://$SOCK" >>"$LOG" 2>&1 < /dev/null &
    echo $! > /run/neuro-podman.pid
    for _ in $(seq 100); do
        ping_ok && break
        sleep 0.1
    done
    if ! ping_ok; then
        say "the API service does not answer on $SOCK:"; tail -n 20 "$LOG" >&2; exit 1
    fi
fi
echo "$SOCK"
