#!/usr/bin/env bash
# Instructions and locked (atomic read-modify-write) instructions per operation of one runner
# workload, from one run under callgrind: numbers that do not move with the box's load, for
# the hot paths whose time does (on this VM a locked instruction costs ~20 cycles, so their
# count is most of a ping-pong's time).
#
#   benches/locked_ops.sh -b target/release/deps/bench_chan-HASH -w pingpong_unbuf -n 200000 \
#       [-e GOMAXPROCS=1] [-t 20]
#
# -n is the workload's operation count (the runner's N), -t how many of the busiest locked
# instructions to list. Locked means a `lock`-prefixed instruction, `xchg` with memory (implicitly
# locked) or `mfence`, found with objdump in the runner itself (not in libc).
set -euo pipefail
bin= wl= n= top=20 envs=(GOMAXPROCS=1)
while getopts "b:w:n:e:t:" o; do
    case $o in
    b) bin=$OPTARG ;;
    w) wl=$OPTARG ;;
    n) n=$OPTARG ;;
    e) envs+=("$OPTARG") ;;
    t) top=$OPTARG ;;
    *) exit 2 ;;
    esac
done
[[ -n $bin && -n $wl && -n $n ]] || { echo "usage: $0 -b BIN -w WORKLOAD -n OPS [-e VAR=VAL] [-t TOP]" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
env "${envs[@]}" valgrind --tool=callgrind --dump-instr=yes --compress-pos=no --compress-strings=no \
    --callgrind-out-file="$tmp/cg" "$bin" "$wl" >"$tmp/out" 2>"$tmp/err"
objdump -d --no-show-raw-insn "$bin" |
    awk '/^[0-9a-f]+ <.*>:$/ { fn = $2 } (/lock / || /xchg/ || /mfence/) && !/xchg +%ax,%ax/ { sub(":", "", $1); print $1, fn, $2, $3 }' \
        >"$tmp/locked"
python3 - "$tmp" "$n" "$top" "$(basename "$bin")" <<'EOF'
import collections, sys
tmp, n, top, binname = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
locked = {}
for line in open(f"{tmp}/locked"):
    addr, fn, *ins = line.split()
    locked[int(addr, 16)] = (fn.strip("<>:"), " ".join(ins))
count, total, ob = collections.Counter(), 0, ""
for line in open(f"{tmp}/cg"):
    if line.startswith("ob="):
        ob = line
    elif line.startswith("summary:"):
        total = int(line.split()[1])
    elif line[:2] == "0x" and binname in ob:
        p = line.split()
        if len(p) >= 3 and int(p[0], 16) in locked:
            count[int(p[0], 16)] += int(p[2])
print(f"instructions per op: {total / n:.0f}")
print(f"locked instructions per op: {sum(count.values()) / n:.2f}")
for addr, c in count.most_common(top):
    if c < n / 100:
        break
    fn, ins = locked[addr]
    print(f"  {c / n:6.2f}  {ins:28.28}  {fn[:110]}")
EOF
