#!/usr/bin/env bash
# The profilers' row: what a CPU profile at 100 Hz and heap sampling at the default rate cost,
# on against off, in gort beside Go, in one sitting (benches/README.md, "The profilers' row").
#
#   benches/prof_overhead.sh [-n ROUNDS] [-d SECS] [-p "1 2"] [-a ALLOC_ROUNDS] [-s "http cpu alloc"] [--no-build]
#
# http: HTTP hello under `wrk -t1 -c50 -dSECS --latency` (after a 1 s warm-up; a fresh server per
#   run), GOMAXPROCS / workers in -p, every mode once per round in an order that rotates with the
#   round, all servers serving /debug/pprof/ on a second port:
#     gort plain  examples/http_hello (System allocator)
#     gort cpu    the same, with `GET /debug/pprof/profile?seconds=SECS+1` in flight over the
#                 whole wrk run (100 Hz, as a user starts one)
#     gort heap   examples/http_hello_heap: the same server built with gort::profiler::Allocator
#                 (default rate, 512 KiB), against the plain binary as its "off"
#     go plain    benches/go-http -mode hello (heap sampling at Go's default rate, always built in)
#     go cpu      the same, with the same profile request
#     go heap0    the same under GODEBUG=memprofilerate=0 (Go's "off": the check stays compiled in)
#   The last CPU profile of each runtime stays in $CARGO_TARGET_DIR/prof_overhead.{gort,go}.cpu.pb.gz.
#   Reported per mode: median req/s and p99 over the rounds, and the median of the per-round
#   ratios to plain (gort heap, gort cpu, go cpu against plain; go plain against go heap0), so
#   both sides of a ratio saw the same neighbours.
# cpu: the CPU-profile overhead benchmark: skynet_1m in gort's bench_runtime and Go's gortbench,
#   off against BENCH_CPU_PROFILE_HZ=100 (benches/ab_env.sh, ROUNDS interleaved rounds; Go also
#   under GODEBUG=memprofilerate=0), at each GOMAXPROCS in -p.
# alloc: heap sampling's whole-process benchmark, benches/alloc_ab.sh -n ALLOC_ROUNDS (plain
#   System, a forwarding wrapper, the sampling Allocator at the default rate and at rate 0; CPU
#   time, pinned to one CPU). gort only: it has no Go twin.
#
# Defaults: -n 5, -d 5, -p "1 2", -a 15, every section. Needs wrk, curl, go, cargo, jq. Environment:
# CARGO_TARGET_DIR (default ./target), GO_TARGET (Go binaries, default $CARGO_TARGET_DIR/bench-go),
# HELLO_ADDR and PPROF_ADDR (the servers' ports, default 127.0.0.1:8090 and :8091; net.sh uses 8080-8083).
# About 10 minutes at the defaults; prints markdown tables on stdout, progress on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
n=5 DUR=5 PROCS="1 2" AROUNDS=15 SECTIONS="http cpu alloc" BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
    -n) n=$2; shift 2 ;;
    -d) DUR=$2; shift 2 ;;
    -p) PROCS=$2; shift 2 ;;
    -a) AROUNDS=$2; shift 2 ;;
    -s) SECTIONS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (try -h)" >&2; exit 2 ;;
    esac
done
T=${CARGO_TARGET_DIR:-$ROOT/target}
export CARGO_TARGET_DIR=$T
GT=${GO_TARGET:-$T/bench-go}
want() { case " $SECTIONS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# bench_runtime is a [[bench]] target, left only as deps/bench_runtime-HASH: take its path from
# cargo's JSON message (as compare.sh does) and keep a copy under a fixed name.
RUNNER=$T/bench-runners/bench_runtime
if [ "$BUILD" = 1 ]; then
    echo "# building..." >&2
    if want http; then cargo build --release -q --example http_hello --example http_hello_heap; fi
    if want cpu; then
        exe=$(cargo build --release --message-format=json-render-diagnostics --bench bench_runtime |
            jq -r 'select(.target.name == "bench_runtime" and .executable != null) | .executable' | tail -n 1)
        mkdir -p "$(dirname "$RUNNER")"
        cp -f "$exe" "$RUNNER"
    fi
    mkdir -p "$GT"
    if want http; then (cd benches/go-http && go build -o "$GT/go-http" .); fi
    if want cpu; then (cd benches/go && go build -o "$GT/gortbench" .); fi
fi

med() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "-"}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "" || b == "" || b == 0) print ""; else printf "%.3f", a / b}'; }
# wrk's latency ("809.00us", "2.67ms", "1.02s") in microseconds.
to_us() { awk -v v="$1" 'BEGIN {u = v; sub(/[0-9.]+/, "", u); x = v + 0; printf "%.0f", x * (u == "ms" ? 1000 : u == "s" ? 1e6 : 1)}'; }

# PIDS, cleanup (on exit) and wait_port.
. "$ROOT/benches/servers.sh"

ADDR=${HELLO_ADDR:-127.0.0.1:8090} PPROF=${PPROF_ADDR:-127.0.0.1:8091}
# The server of a mode: its environment and command line.
server_cmd() { # mode procs
    case $1 in
    gort:plain | gort:cpu) echo env GOMAXPROCS=$2 "$T/release/examples/http_hello" --addr $ADDR --pprof $PPROF ;;
    gort:heap) echo env GOMAXPROCS=$2 "$T/release/examples/http_hello_heap" --addr $ADDR --pprof $PPROF ;;
    go:plain | go:cpu) echo env GOMAXPROCS=$2 "$GT/go-http" -mode hello -addr $ADDR -pprof $PPROF ;;
    go:heap0) echo env GOMAXPROCS=$2 GODEBUG=memprofilerate=0 "$GT/go-http" -mode hello -addr $ADDR -pprof $PPROF ;;
    esac
}

# One wrk run against a fresh server; sets RUN_RPS and RUN_P99 (microseconds).
http_run() { # mode procs
    local mode=$1 procs=$2 srv prof="" out c
    read -r -a c <<<"$(server_cmd "$mode" "$procs")"
    "${c[@]}" >/dev/null 2>&1 &
    srv=$!
    PIDS+=("$srv")
    wait_port $ADDR
    wrk -t1 -c50 -d1 "http://$ADDR/" >/dev/null 2>&1 || true # warm-up
    local pf=$T/prof_overhead.${mode%%:*}.cpu.pb.gz # the last run's profile is kept, to look at
    if [[ $mode == *:cpu ]]; then
        rm -f "$pf"
        # The profile spans the wrk run: it starts 0.3 s before and ends ~0.7 s after.
        curl -sf -o "$pf" --max-time $((DUR + 15)) "http://$PPROF/debug/pprof/profile?seconds=$((DUR + 1))" &
        prof=$!
        sleep 0.3
    fi
    out=$(wrk -t1 -c50 -d"$DUR" --latency "http://$ADDR/")
    if [ -n "$prof" ]; then
        if ! wait "$prof" || [ ! -s "$pf" ]; then
            echo "$mode ($procs): the CPU profile request failed" >&2
        fi
    fi
    kill "$srv" 2>/dev/null || true
    wait "$srv" 2>/dev/null || true
    RUN_RPS=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
    RUN_P99=$(to_us "$(awk '$1=="99%" {print $2}' <<<"$out")")
}

if want http; then
    MODES=(gort:plain gort:cpu gort:heap go:plain go:cpu go:heap0)
    k=${#MODES[@]}
    declare -A RPS P99 RR PR
    for ((r = 0; r < n; r++)); do
        for P in $PROCS; do
            declare -A rps_now=() p99_now=()
            for ((i = 0; i < k; i++)); do
                m=${MODES[$(((i + r) % k))]}
                http_run "$m" "$P"
                v=$RUN_RPS p=$RUN_P99
                echo "round $((r + 1))/$n P=$P $m: $v req/s p99 ${p}us" >&2
                rps_now[$m]=$v p99_now[$m]=$p
                RPS[$m:$P]+="$v " P99[$m:$P]+="$p "
            done
            # Paired ratios: each mode against its own runtime's "off" of the same round.
            for m in "${MODES[@]}"; do
                case $m in
                gort:*) base=gort:plain ;;
                go:heap0) continue ;;
                go:plain) base=go:heap0 ;;
                go:*) base=go:plain ;;
                esac
                [ "$m" = "$base" ] && continue
                RR[$m:$P]+="$(ratio "${rps_now[$m]}" "${rps_now[$base]}") "
                PR[$m:$P]+="$(ratio "${p99_now[$m]}" "${p99_now[$base]}") "
            done
        done
    done
    echo
    echo "HTTP hello, $(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg), $n interleaved rounds of wrk -t1 -c50 -d$DUR --latency; medians (ratio: median of the per-round ratios to the same runtime's off)"
    echo
    echo "| P | runtime | off: req/s, p99 | CPU profile 100 Hz: req/s, p99 | on/off req/s | on/off p99 | heap sampling: req/s, p99 | on/off req/s | on/off p99 |"
    echo "|---|---|---|---|---|---|---|---|---|"
    for P in $PROCS; do
        cell() { echo "$(med <<<"${RPS[$1:$P]:-}"), $(med <<<"${P99[$1:$P]:-}") us"; }
        echo "| $P | gort | $(cell gort:plain) | $(cell gort:cpu) | $(med <<<"${RR[gort:cpu:$P]:-}") | $(med <<<"${PR[gort:cpu:$P]:-}") | $(cell gort:heap) | $(med <<<"${RR[gort:heap:$P]:-}") | $(med <<<"${PR[gort:heap:$P]:-}") |"
        # Go's "off" for heap sampling is memprofilerate=0; its plain server samples.
        echo "| $P | Go | $(cell go:plain) (heap off: $(cell go:heap0)) | $(cell go:cpu) | $(med <<<"${RR[go:cpu:$P]:-}") | $(med <<<"${PR[go:cpu:$P]:-}") | $(cell go:plain) | $(med <<<"${RR[go:plain:$P]:-}") | $(med <<<"${PR[go:plain:$P]:-}") |"
        echo "| $P | Tokio (hyper) | n/a: no built-in profiler | | | | | | |"
    done
fi

if want cpu; then
    echo
    echo "skynet_1m (ms), CPU profile at 100 Hz on/off, benches/ab_env.sh -n $n, $(date -u '+%H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo '```'
    for P in $PROCS; do
        echo "gort, GOMAXPROCS=$P"
        benches/ab_env.sh -n "$n" -b "$RUNNER" -w skynet_1m -e GOMAXPROCS="$P" -s off: -s cpu100:BENCH_CPU_PROFILE_HZ=100
        echo "Go, GOMAXPROCS=$P"
        benches/ab_env.sh -n "$n" -b "$GT/gortbench" -w skynet_1m -e GOMAXPROCS="$P" -s off: -s cpu100:BENCH_CPU_PROFILE_HZ=100 \
            -s heap0:GODEBUG=memprofilerate=0
    done
    echo '```'
fi

if want alloc; then
    echo
    echo "alloc_ab (allocation-heavy, no runtime), heap sampling, benches/alloc_ab.sh -n $AROUNDS, $(date -u '+%H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo '```'
    benches/alloc_ab.sh -n "$AROUNDS"
    echo '```'
fi
