#!/usr/bin/env bash
# Start, stop and provision a local Docker engine for the rlm-docker backend, with no registry.
#
#   scripts/docker-engine.sh start        install docker.io if dockerd is missing, start dockerd
#                                         (no bridge, no iptables) in the background, wait for it
#   scripts/docker-engine.sh build-image  build the small local image rlm-python:3.11 FROM scratch
#                                         from Debian's own /usr/bin/python3.11 (no registry access)
#   scripts/docker-engine.sh stop         remove every container labelled rlm.managed=1, stop the
#                                         daemon this script started and its containerd and shims
#   scripts/docker-engine.sh status       say whether an engine answers and whether the image exists
#
# Every subcommand is idempotent and returns quickly when there is nothing to do. Settings:
#   RLM_DOCKER_IMAGE      image tag build-image creates (default rlm-python:3.11); rlm's settings
#                         read the same variable as the docker backend's image option
#   RLM_ENGINE_STATE_DIR  the daemon's pid file and log (default ${TMPDIR:-/tmp}/rlm-docker-engine)
#   RLM_IMAGE_PYTHON      the Debian interpreter copied into the image (default /usr/bin/python3.11)
set -euo pipefail

IMAGE="${RLM_DOCKER_IMAGE:-rlm-python:3.11}"
STATE_DIR="${RLM_ENGINE_STATE_DIR:-${TMPDIR:-/tmp}/rlm-docker-engine}"
PYTHON="${RLM_IMAGE_PYTHON:-/usr/bin/python3.11}"
PID_FILE="$STATE_DIR/dockerd.pid"
LOG_FILE="$STATE_DIR/dockerd.log"
LABEL="rlm.managed=1"

log() { printf 'docker-engine: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need_root() {
    [ "$(id -u)" = 0 ] || die "$1 needs root (run it with sudo, or start an engine yourself)"
}

engine_up() { docker info >/dev/null 2>&1; }

our_pid() {
    # The pid in our pid file, if that process is still a dockerd.
    local pid
    [ -f "$PID_FILE" ] || return 1
    pid="$(cat "$PID_FILE")"
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q dockerd || return 1
    printf '%s\n' "$pid"
}

cmd_start() {
    if engine_up; then
        log "an engine is already answering ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
        return 0
    fi
    need_root "starting dockerd"
    if ! command -v dockerd >/dev/null 2>&1; then
        log "dockerd is missing; installing docker.io with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # The postinst cannot start the service (no init system); that message is harmless.
        apt-get install -y -qq --no-install-recommends docker.io >/dev/null
        command -v dockerd >/dev/null 2>&1 || die "apt-get installed docker.io but dockerd is still not on PATH"
    fi
    if ! command -v docker >/dev/null 2>&1; then
        die "the docker CLI is missing although dockerd exists; install docker.io (apt-get install -y docker.io)"
    fi
    mkdir -p "$STATE_DIR"
    if pid="$(our_pid)"; then
        log "dockerd (pid $pid) is starting already; waiting for it"
    else
        # No bridge and no iptables rules: sandboxes run with --network none, and this keeps the
        # host's firewall untouched. setsid detaches it from the caller's process group.
        setsid dockerd --bridge=none --iptables=false --ip6tables=false \
            >"$LOG_FILE" 2>&1 </dev/null &
        echo $! >"$PID_FILE"
        pid=$!
    fi
    for _ in $(seq 1 300); do
        if engine_up; then
            log "dockerd (pid $pid) is ready; log: $LOG_FILE"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$LOG_FILE" >&2 || true
            rm -f "$PID_FILE"
            die "dockerd exited during start-up (log above, full log in $LOG_FILE)"
        fi
        sleep 0.1
    done
    tail -n 20 "$LOG_FILE" >&2 || true
    die "dockerd did not answer within 30 s (log: $LOG_FILE)"
}

remove_our_containers() {
    local ids
    ids="$(docker ps -aq --filter "label=$LABEL" 2>/dev/null || true)"
    if [ -n "$ids" ]; then
        log "removing $(echo "$ids" | wc -l) rlm container(s)"
        # shellcheck disable=SC2086 # one id per word
        docker rm -f $ids >/dev/null 2>&1 || true
    fi
}

kill_our_shims() {
    # Shims of the containerd that our dockerd managed name its socket under /var/run/docker or
    # /run/docker; they outlive the daemon when a container was still running.
    local dir cmd pid
    for dir in /proc/[0-9]*; do
        pid="${dir#/proc/}"
        cmd="$(tr '\0' ' ' 2>/dev/null <"$dir/cmdline" || true)"
        case "$cmd" in
            *containerd-shim*"/run/docker/containerd/containerd.sock"*|*containerd-shim*"-namespace moby"*)
                kill -9 "$pid" 2>/dev/null || true ;;
        esac
    done
}

cmd_stop() {
    if engine_up; then
        remove_our_containers
    fi
    local pid
    if ! pid="$(our_pid)"; then
        rm -f "$PID_FILE"
        log "no dockerd started by this script is running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "dockerd (pid $pid) ignored SIGTERM for 15 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    kill_our_shims
    rm -f "$PID_FILE"
    log "dockerd (pid $pid) stopped"
}

cmd_build_image() {
    local force=0
    [ "${1:-}" = "--force" ] && force=1
    engine_up || die "no Docker engine answers; run '$0 start' first"
    if [ "$force" = 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
        log "image $IMAGE exists already (pass --force to rebuild)"
        return 0
    fi
    if [ ! -x "$PYTHON" ]; then
        need_root "installing python3.11"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends python3.11 >/dev/null
    fi
    local version stdlib stage
    version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    stdlib="$("$PYTHON" -I -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')"
    stage="$(mktemp -d "${TMPDIR:-/tmp}/rlm-image.XXXXXX")"
    trap 'rm -rf "$stage"' RETURN

    mkdir -p "$stage/usr/bin" "$stage/tmp" "$stage$(dirname "$stdlib")"
    chmod 1777 "$stage/tmp"
    cp -L "$PYTHON" "$stage/usr/bin/python$version"
    ln -s "python$version" "$stage/usr/bin/python3"
    ln -s "python$version" "$stage/usr/bin/python"
    # The standard library with its compiled bytecode (the root filesystem is read-only at run
    # time, so nothing can be compiled there), without tests and third-party packages.
    tar -C "$(dirname "$stdlib")" \
        --exclude="$(basename "$stdlib")/test" \
        --exclude="$(basename "$stdlib")/site-packages" \
        --exclude="$(basename "$stdlib")/dist-packages" \
        --exclude="$(basename "$stdlib")/idlelib" \
        --exclude="$(basename "$stdlib")/tkinter" \
        --exclude="$(basename "$stdlib")/turtledemo" \
        --exclude="$(basename "$stdlib")/lib2to3/tests" \
        -cf - "$(basename "$stdlib")" | tar -C "$stage$(dirname "$stdlib")" -xf -
    # Every shared library the interpreter and its extension modules load, and the loader.
    {
        ldd "$PYTHON"
        find "$stdlib/lib-dynload" -name '*.so' -exec ldd {} \; 2>/dev/null
    } | awk '/=> \// { print $3 } /^[[:space:]]*\/[^ ]+ \(/ { print $1 }' | sort -u |
        while read -r lib; do
            cp -L --parents "$lib" "$stage/"
        done
    # `docker import` of the staged tree is the whole build (the equivalent Dockerfile is
    # FROM scratch / COPY . / / ENV PATH=/usr/bin); it needs no builder and no registry.
    tar -C "$stage" --numeric-owner --owner=0 --group=0 -cf - . |
        docker import --change 'ENV PATH=/usr/bin LANG=C.UTF-8' --change 'LABEL rlm.image=1' \
            --change 'CMD ["python3"]' - "$IMAGE" >/dev/null
    docker image prune -f --filter label=rlm.image=1 >/dev/null
    docker run --rm --network none "$IMAGE" python3 -I -c \
        'import json, asyncio, sqlite3, ssl, hashlib, zlib, ctypes' \
        || die "the image $IMAGE was built but its python3 cannot import the standard library"
    log "built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }')) from $PYTHON"
}

cmd_status() {
    if engine_up; then
        log "engine: $(docker version --format '{{.Server.Version}}' 2>/dev/null)"
    else
        log "engine: not reachable"
    fi
    if engine_up && docker image inspect "$IMAGE" >/dev/null 2>&1; then
        log "image: $IMAGE present"
    else
        log "image: $IMAGE missing"
    fi
    if pid="$(our_pid)"; then log "dockerd started by this script: pid $pid"; fi
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    build-image) shift; cmd_build_image "$@" ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|build-image [--force]|stop|status" >&2; exit 2 ;;
esac
