#!/usr/bin/env bash
# Network benchmarks, side by side in one sitting (benches/NET.md has results and caveats).
#
#   benches/net.sh            # HTTP hello (wrk -t1 -c50 -d10 --latency) and echo (100 conns x 100 B)
#   DUR=5 ECHO_DUR=5 benches/net.sh
#
# Servers: gort's examples/http_hello.rs and examples/echo.rs (GOMAXPROCS=1 and 2), Go net/http
# (benches/go-http, GOMAXPROCS), may_minihttp and hyper on Tokio (benches/http-peers, --workers),
# a Tokio echo server. The echo load generator is benches/http-peers' echo_load (one Tokio thread).
# Needs: wrk, go, cargo. Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DUR=${DUR:-10}
ECHO_DUR=${ECHO_DUR:-10}
T=${CARGO_TARGET_DIR:-$ROOT/target}
TP=${PEERS_TARGET_DIR:-/tmp/target-http-peers}

echo "building..." >&2
cargo build --release -q --example http_hello --example echo
(cd benches/http-peers && CARGO_TARGET_DIR=$TP cargo build --release -q)
(cd benches/go-http && go build -o "$TP/go-http" .)

# PIDS, cleanup (on exit) and wait_port.
. "$ROOT/benches/servers.sh"

start() { # name addr cmd...
    local addr=$2
    shift 2
    "$@" >/dev/null 2>&1 &
    SERVER=$!
    PIDS+=("$SERVER")
    wait_port "$addr"
}

# The server's CPU time so far (user + system), in clock ticks.
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$SERVER/stat"
}

# Server CPU microseconds per operation: ticks used over `ops` operations. The load generator
# shares the box's two vCPUs with the server and can be the limit (both servers then reach the
# same rate); the CPU a server spends per request is the measure that limit does not hide.
cpu_per_op() { # ticks ops
    awk -v t="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}'
}

stop() {
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
}

ROWS=()
http_row() { # label procs addr cmd...
    local label=$1 procs=$2 addr=$3
    shift 3
    start "$label" "$addr" "$@"
    wrk -t1 -c50 -d1 "http://$addr/" >/dev/null 2>&1 || true # warm-up
    local out c0 c1
    c0=$(cpu_ticks)
    out=$(wrk -t1 -c50 -d"$DUR" --latency "http://$addr/")
    c1=$(cpu_ticks)
    stop
    local rps p50 p99 n cpu
    rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    cpu=$(cpu_per_op $((c1 - c0)) "$n")
    ROWS+=("| http hello | $label | $procs | $rps | $p50 | $p99 | $cpu |")
    echo "$label ($procs): $rps req/s p50 $p50 p99 $p99 cpu ${cpu}us/req" >&2
}

echo_row() { # label procs addr cmd...
    local label=$1 procs=$2 addr=$3
    shift 3
    start "$label" "$addr" "$@"
    local out c0 c1
    c0=$(cpu_ticks)
    out=$("$TP/release/echo_load" --addr "$addr" --conns 100 --size 100 --secs "$ECHO_DUR")
    c1=$(cpu_ticks)
    stop
    local rt p50 p99 cpu
    rt=$(sed -E 's/.*round_trips\/s=([0-9]+).*/\1/' <<<"$out")
    p50=$(sed -E 's/.*p50_us=([0-9]+).*/\1/' <<<"$out")
    p99=$(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$out")
    cpu=$(cpu_per_op $((c1 - c0)) $((rt * ECHO_DUR)))
    ROWS+=("| echo 100x100B | $label | $procs | $rt | ${p50}us | ${p99}us | $cpu |")
    echo "$label ($procs): $out cpu ${cpu}us/round trip" >&2
}

for P in 1 2; do
    http_row "gort http_hello" $P 127.0.0.1:8080 env GOMAXPROCS=$P "$T/release/examples/http_hello" --addr 127.0.0.1:8080
    http_row "Go net/http" $P 127.0.0.1:8081 env GOMAXPROCS=$P "$TP/go-http" -mode hello -addr 127.0.0.1:8081
    http_row "hyper (Tokio)" $P 127.0.0.1:8082 "$TP/release/hyper_hello" --workers $P --addr 127.0.0.1:8082
    http_row "may_minihttp" $P 127.0.0.1:8083 "$TP/release/may_hello" --workers $P --addr 127.0.0.1:8083
done
for P in 1 2; do
    echo_row "gort echo" $P 127.0.0.1:7000 env GOMAXPROCS=$P "$T/release/examples/echo" --addr 127.0.0.1:7000
    echo_row "Go net" $P 127.0.0.1:7001 env GOMAXPROCS=$P "$TP/go-http" -mode echo -addr 127.0.0.1:7001
    echo_row "Tokio" $P 127.0.0.1:7002 "$TP/release/tokio_echo" --workers $P --addr 127.0.0.1:7002
done

echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) vCPUs, wrk -t1 -c50 -d$DUR --latency; echo: 100 conns x 100 B, ${ECHO_DUR}s"
echo
echo "| workload | server | workers | req/s (round trips/s) | p50 | p99 | server CPU us/op |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
