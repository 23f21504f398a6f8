# shellcheck shell=bash
#
# scripts/lib/common.sh — shared helpers for Herald's shell scripts.
#
# Source it, do not run it:
#     source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
#
# It defines:
#   HERALD_ROOT       the repository root (absolute path)
#   HERALD_CACHE      per-machine cache, default ~/.cache/herald (exported)
#   CARGO_TARGET_DIR  default $HERALD_CACHE/target (exported). It is a fixed
#                     folder OUTSIDE the repository on purpose: CI clones the
#                     repo into a different folder on the same machine, and a
#                     shared target dir lets that fresh clone reuse the warm
#                     build instead of compiling librdkafka and every crate
#                     again.
#   log / die         messages on stderr (stdout is kept for real output, e.g.
#                     the address printed by scripts/services/*)
#   free_port         print a free TCP port on 127.0.0.1
#   wait_for_port     wait until HOST:PORT accepts TCP connections
#   find_java         print the path of a Java >= 17 binary
#   pid_alive         is a PID still running (and not a zombie)?
#   stop_pid          SIGTERM a PID, SIGKILL after a grace period
#
# It only defines things; it does not set shell options (the caller does
# `set -euo pipefail`).

# Guard against double sourcing.
if [[ -n "${_HERALD_COMMON_SH:-}" ]]; then
    return 0
fi
_HERALD_COMMON_SH=1

# shellcheck disable=SC2034 # used by the scripts that source this file
HERALD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# ~ expands from the password database when HOME is unset.
export HERALD_CACHE="${HERALD_CACHE:-${HOME:-$(cd ~ && pwd)}/.cache/herald}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HERALD_CACHE/target}"

# rustup installs cargo in ~/.cargo/bin; make sure a non-login shell finds it.
if ! command -v cargo >/dev/null 2>&1 && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

# log MESSAGE... — one line on stderr, tagged with the calling script's name.
log() {
    printf '[%s] %s\n' "${HERALD_LOG_TAG:-$(basename "$0")}" "$*" >&2
}

# die MESSAGE... — log and exit 1.
die() {
    log "error: $*"
    exit 1
}

# free_port — print a TCP port that is free on 127.0.0.1 right now.
# (Another process could take it before the caller binds it; the window is
# small and every server here binds within a second or two.)
free_port() {
    # Debian's python3 first: a pyenv shim costs ~150 ms per call.
    local py
    py="$(command -v /usr/bin/python3 python3 2>/dev/null | head -n 1 || true)"
    if [[ -n "$py" ]]; then
        "$py" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
        return
    fi
    # Fallback without python: random ports until one refuses connections.
    local port _
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    die "free_port: no free port found"
}

# port_open HOST PORT — succeed if HOST:PORT accepts a TCP connection now.
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

# wait_for_port HOST PORT TIMEOUT_SECONDS — wait until HOST:PORT accepts TCP
# connections. Returns 1 if it still does not after TIMEOUT_SECONDS.
wait_for_port() {
    local host=$1 port=$2 timeout_s=${3:-30}
    local deadline=$((SECONDS + timeout_s))
    until port_open "$host" "$port"; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.1
    done
}

# java_major JAVA — print the major version of a java binary (8 for 1.8.x).
java_major() {
    local v
    v="$("$1" -version 2>&1 | awk -F'"' '/version/ { print $2; exit }')"
    case "$v" in
        1.*) v="${v#1.}" ;;
    esac
    echo "${v%%[.+-]*}"
}

# find_java — print a java binary of version 17 or newer: $JAVA_HOME's, the one
# on PATH, or Debian's openjdk-17 (which scripts/install-deps installs when the
# default java is older). Fails if there is none.
find_java() {
    local candidate major
    for candidate in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} "$(command -v java 2>/dev/null || true)" \
        /usr/lib/jvm/java-17-openjdk-*/bin/java; do
        [[ -n "$candidate" && -x "$candidate" ]] || continue
        major="$(java_major "$candidate")"
        if [[ "$major" =~ ^[0-9]+$ ]] && ((major >= 17)); then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

# pid_alive PID — succeed if PID runs (a zombie counts as gone).
pid_alive() {
    local pid=$1 state
    kill -0 "$pid" 2>/dev/null || return 1
    state="$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null || true)"
    [[ "$state" != "Z" ]]
}

# pid_is PID PATTERN — succeed if PID runs and its command line contains
# PATTERN (guards against killing an unrelated process that reused a stale
# pidfile's PID).
pid_is() {
    local pid=$1 pattern=$2
    pid_alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pattern"
}

# stop_pid PID [GRACE_SECONDS] — SIGTERM, wait up to GRACE_SECONDS (default
# 20), then SIGKILL. Returns once the process is gone.
stop_pid() {
    local pid=$1 grace=${2:-20}
    pid_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + grace))
    while pid_alive "$pid"; do
        if ((SECONDS >= deadline)); then
            log "pid $pid still running after ${grace}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
            break
        fi
        sleep 0.1
    done
}
