# shellcheck shell=bash
#
# scripts/lib/devstack.sh — building and stopping devstack, shared by scripts/dev and the test
# hooks that run the whole system (scripts/test.d/30-browser).
#
# Source it after common.sh (it needs CARGO_TARGET_DIR and log):
#     source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
#     source "$(dirname "${BASH_SOURCE[0]}")/lib/devstack.sh"
#
# It defines:
#   DEVSTACK_BIN                   $CARGO_TARGET_DIR/local/devstack
#   devstack_build_self            cargo build --profile local -p devstack
#   devstack_functions TEMPLATE    print the binary name of every function of TEMPLATE
#   devstack_build_all TEMPLATE    devstack, then every function of TEMPLATE (profile local);
#                                  each function's crate is named like its binary
#   devstack_stop PID [GRACE]      stop a devstack started in the background: SIGINT (its
#                                  Ctrl-C: it stops its functions, Redis and Kafka), then
#                                  SIGTERM/SIGKILL after GRACE seconds (default 15)

if [[ -n "${_HERALD_DEVSTACK_SH:-}" ]]; then
    return 0
fi
_HERALD_DEVSTACK_SH=1

DEVSTACK_BIN="$CARGO_TARGET_DIR/local/devstack"

devstack_build_self() {
    cargo build --quiet --profile local -p devstack
}

devstack_functions() {
    "$DEVSTACK_BIN" functions --template "$1"
}

devstack_build_all() {
    local template=$1 f functions packages=()
    log "building devstack (cargo build --profile local -p devstack)"
    devstack_build_self
    mapfile -t functions < <(devstack_functions "$template")
    for f in "${functions[@]}"; do
        packages+=(-p "$f")
    done
    log "building ${functions[*]} (cargo build --profile local ${packages[*]})"
    cargo build --profile local "${packages[@]}"
}

devstack_stop() {
    local pid=$1 grace=${2:-15}
    pid_alive "$pid" || return 0
    kill -INT "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + grace))
    while pid_alive "$pid" && ((SECONDS < deadline)); do
        sleep 0.2
    done
    stop_pid "$pid" 5
}
