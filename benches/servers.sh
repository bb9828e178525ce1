# Shared by benches/net.sh and benches/prof_overhead.sh (sourced): background servers that are
# killed when the script exits, and a wait for a server's port to accept connections.

PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_port() { # host:port
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "server on $1 did not start" >&2
    return 1
}
