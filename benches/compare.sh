#!/usr/bin/env bash
# Runs gort's benchmark workloads in gort, Go, Tokio and may in one sitting and prints a
# markdown table of medians and ratios against Go. See benches/README.md.
#
#   benches/compare.sh [-n RUNS] [-p "1 2"] [-r "gort go tokio may"] [-o OUT_DIR] [--no-build] [WORKLOAD...]
#
# Every (run, workload, GOMAXPROCS) cell runs the four runtimes back to back, in an order that
# rotates with the run number, so drift on a shared machine hits them alike. Each measurement is
# a fresh process with a time limit (TIMEOUT seconds, default 30); a crash or a timeout is
# recorded as a failure ("(k fail)" or "fail" in the table, the reason in OUT_DIR/failures.txt).
# Only the runtimes named by -r are built; --no-build runs the binaries of the last build.
#
# The goroutine-profile workloads, whose pause rows are a worst case, start SETTLE seconds
# (default 4) after the previous process ended: this VM's balloon reports freed memory to the
# host two seconds after a process frees it, and the host's reclaim of a benchmark's few
# hundred MiB pauses every vCPU for 10-25 ms, which lands in whichever run comes next.
#
# Environment: CARGO_TARGET_DIR (the workspace's target dir, default ./target), PEERS_TARGET_DIR
# (benches/peers' own target dir, default benches/peers/target), GO (the go command), TIMEOUT,
# SETTLE.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=5
PROCS="1 2"
RUNTIMES="gort go tokio may"
BUILD=1
OUT=""
TIMEOUT=${TIMEOUT:-30}
SETTLE=${SETTLE:-4}
GO=${GO:-go}
GORT_TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PEERS_TARGET=${PEERS_TARGET_DIR:-$ROOT/benches/peers/target}

# workload -> GOMAXPROCS values it is run at (intersected with -p). `switch` is by definition
# two goroutines on one P.
declare -A ONLY_PROCS=([switch]="1")
# workload -> runtimes that have no twin for it (skipped; their cells show "-"). Neither Tokio
# nor may has a goroutine profile.
declare -A NOT_IN=([goroutine_profile_100k]="tokio may" [goroutine_profile_100k_spin]="tokio may")
# workloads that start SETTLE seconds after the previous process (see the top).
declare -A SETTLED=([goroutine_profile_100k]=1 [goroutine_profile_100k_spin]=1)
ALL_WORKLOADS="switch spawn_join_1m chained_spawn_1000 yield_200x10k skynet_1m skynet_1m_chan park_100k
pingpong_unbuf mpmc_4x4_cap1024 mutex_4x1m waitgroup_100k sleep_100k unix_rtt goroutine_profile_100k
goroutine_profile_100k_spin"

usage() { # exit status
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    echo "workloads: $(echo $ALL_WORKLOADS)"
    exit "$1"
}

WORKLOADS=""
while [ $# -gt 0 ]; do
    case "$1" in
    -n) RUNS=$2; shift 2 ;;
    -p) PROCS=$2; shift 2 ;;
    -r) RUNTIMES=$2; shift 2 ;;
    -o) OUT=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) usage 0 ;;
    -*) usage 2 ;;
    *) WORKLOADS="$WORKLOADS $1"; shift ;;
    esac
done
WORKLOADS=$(echo ${WORKLOADS:-$ALL_WORKLOADS})
for w in $WORKLOADS; do
    case " $(echo $ALL_WORKLOADS) " in *" $w "*) ;; *) echo "unknown workload: $w" >&2; usage 2 ;; esac
done
OUT=${OUT:-$GORT_TARGET/bench-compare/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
GO_BIN=$GORT_TARGET/bench-go/gortbench
RUNNERS=$GORT_TARGET/bench-runners

# gort's one-shot runners are [[bench]] targets (benches/runners/), which cargo leaves only as
# deps/NAME-HASH; its JSON messages name each file ("executable"). They are copied to fixed names
# in $RUNNERS, where --no-build finds the last build's.
build_runners() {
    local json r exe
    json=$(cd "$ROOT" && CARGO_TARGET_DIR=$GORT_TARGET cargo build --release \
        --message-format=json-render-diagnostics --bench bench_runtime --bench bench_chan --bench bench_mem)
    mkdir -p "$RUNNERS"
    for r in bench_runtime bench_chan bench_mem; do
        exe=$(grep "\"target\":{[^}]*\"name\":\"$r\"" <<<"$json" | grep -o '"executable":"[^"]*"' | tail -n 1 | cut -d'"' -f4)
        if [ -z "$exe" ]; then
            echo "compare.sh: cargo reported no executable for $r" >&2
            exit 1
        fi
        cp -f "$exe" "$RUNNERS/$r"
    done
}

# Builds only what -r asks for: the peers project alone takes minutes.
wanted() { case " $(echo $RUNTIMES) " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
if [ "$BUILD" = 1 ]; then
    echo "# building: $RUNTIMES" >&2
    if wanted gort; then build_runners; fi
    if wanted go; then
        mkdir -p "$(dirname "$GO_BIN")"
        (cd "$ROOT/benches/go" && "$GO" build -o "$GO_BIN" .) >&2
    fi
    if wanted tokio || wanted may; then
        (cd "$ROOT/benches/peers" && CARGO_TARGET_DIR=$PEERS_TARGET cargo build --release) >&2
    fi
fi

# The command line measuring workload $2 in runtime $1.
cmd_for() {
    local rt=$1 w=$2
    case "$rt" in
    gort)
        case "$w" in
        pingpong_unbuf | mpmc_4x4_cap1024 | mutex_4x1m | waitgroup_100k | unix_rtt) echo "$RUNNERS/bench_chan $w" ;;
        park_100k) echo "$RUNNERS/bench_mem $w" ;;
        *) echo "$RUNNERS/bench_runtime $w" ;;
        esac
        ;;
    go) echo "$GO_BIN $w" ;;
    tokio) echo "$PEERS_TARGET/release/peer_tokio $w" ;;
    may) echo "$PEERS_TARGET/release/peer_may $w" ;;
    *) echo "unknown runtime $rt" >&2; exit 2 ;;
    esac
}

RAW=$OUT/raw.txt # lines: runtime procs metric unit value   (value "fail" on failure)
: >"$RAW"
: >"$OUT/failures.txt"
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "host: $(uname -srm), $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "go: $("$GO" version 2>/dev/null || echo '?')"
    echo "rustc: $(rustc --version)"
    echo "gort: $(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet HEAD -- runtime src || echo '+dirty')"
    echo "command: $0 -n $RUNS -p \"$PROCS\" -r \"$RUNTIMES\" $WORKLOADS (SETTLE=$SETTLE)"
} >"$OUT/meta.txt"
cat "$OUT/meta.txt" >&2

start_all=$(date +%s)
rts=($RUNTIMES)
for run in $(seq 1 "$RUNS"); do
    echo "# run $run/$RUNS ($(($(date +%s) - start_all)) s so far)" >&2
    for w in $WORKLOADS; do
        for p in $PROCS; do
            case " ${ONLY_PROCS[$w]:-$p} " in *" $p "*) ;; *) continue ;; esac
            for i in "${!rts[@]}"; do
                rt=${rts[$(((i + run) % ${#rts[@]}))]}
                case " ${NOT_IN[$w]:-} " in *" $rt "*) continue ;; esac
                cmd=$(cmd_for "$rt" "$w")
                [ -n "${SETTLED[$w]:-}" ] && sleep "$SETTLE"
                if out=$(GOMAXPROCS=$p RUST_BACKTRACE=0 timeout -k 5 "$TIMEOUT" $cmd 2>"$OUT/stderr.tmp"); then
                    echo "$out" | awk -v rt="$rt" -v p="$p" \
                        '/^[a-z0-9_]+ [a-z_]+=[0-9.]+$/ { split($2, kv, "="); print rt, p, $1, kv[1], kv[2] }' >>"$RAW"
                else
                    rc=$?
                    why=$(awk '/panicked at/ { getline; print; exit } /memory allocation of|fatal error|Killed/ { print; exit }' \
                        "$OUT/stderr.tmp")
                    [ $rc -gt 128 ] && [ $rc != 137 ] && why="killed by signal $((rc - 128)) $(kill -l $((rc - 128)) 2>/dev/null) ${why}"
                    [ $rc = 124 ] && why="timeout after ${TIMEOUT}s"
                    echo "$rt GOMAXPROCS=$p $w: exit $rc: ${why:-?}" >>"$OUT/failures.txt"
                    echo "$rt $p $w - fail" >>"$RAW"
                fi
            done
        done
    done
done
elapsed=$(($(date +%s) - start_all))
echo "measuring took: ${elapsed} s" >>"$OUT/meta.txt"
rm -f "$OUT/stderr.tmp"

# Medians per (runtime, procs, metric) and the table. A cell shows the median of the runs that
# succeeded, "(k fail)" if k runs crashed or timed out, and "fail" if none succeeded.
awk -v runtimes="$RUNTIMES" '
function median(list,    a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function fmt(v) { return v >= 100 ? sprintf("%.0f", v) : v >= 10 ? sprintf("%.1f", v) : sprintf("%.2f", v) }
$5 == "fail" { failed[$1 SUBSEP $2 SUBSEP $3]++; next }
{
    key = $3 SUBSEP $2
    if (!(key in seen)) { seen[key] = 1; order[++nkeys] = key; unit[$3] = $4 }
    vals[$1 SUBSEP $2 SUBSEP $3] = vals[$1 SUBSEP $2 SUBSEP $3] " " $5
    cnt[$1 SUBSEP $2 SUBSEP $3]++
}
END {
    nrt = split(runtimes, rt, " ")
    hdr = "| workload | unit | GOMAXPROCS |"; sep = "|---|---|---|"
    for (i = 1; i <= nrt; i++) { hdr = hdr " " rt[i] " |"; sep = sep "---|" }
    for (i = 1; i <= nrt; i++) if (rt[i] != "go") { hdr = hdr " " rt[i] "/go |"; sep = sep "---|" }
    print hdr; print sep
    for (k = 1; k <= nkeys; k++) {
        split(order[k], kp, SUBSEP); m = kp[1]; p = kp[2]
        line = "| " m " | " unit[m] " | " p " |"
        delete med
        for (i = 1; i <= nrt; i++) {
            id = rt[i] SUBSEP p SUBSEP m
            if (!(id in vals)) { line = line ((id in failed) ? " fail |" : " - |"); continue }
            med[rt[i]] = median(substr(vals[id], 2))
            line = line " " fmt(med[rt[i]]) ((id in failed) ? " (" failed[id] " fail)" : "") " |"
        }
        for (i = 1; i <= nrt; i++) if (rt[i] != "go") {
            if ((rt[i] in med) && ("go" in med) && med["go"] > 0) line = line " " sprintf("%.2f", med[rt[i]] / med["go"]) " |"
            else line = line " - |"
        }
        print line
    }
}' "$RAW" >"$OUT/table.md"

{
    echo
    cat "$OUT/meta.txt"
    echo "medians of $RUNS runs; lower is better everywhere; ratio < 1 means faster (or smaller) than Go"
    echo
    cat "$OUT/table.md"
    if [ -s "$OUT/failures.txt" ]; then
        echo
        echo "failures:"
        sort "$OUT/failures.txt" | uniq -c
    fi
    echo
    echo "raw values: $RAW"
}
