#!/usr/bin/env bash
# Whole-process cost of a global allocator wrapper: one allocation-heavy program
# (benches/alloc_ab/work.rs) built with `System`, a forwarding wrapper (the control) and
# gort's sampling `Allocator`, run at the default rate and with GORT_MEMPROFILERATE=0.
#
#   benches/alloc_ab.sh [-n ROUNDS] [-w WORK_ROUNDS] [-c] [-C CPU] [-x NAME:BINARY:ENV ...]
#
# Time: ROUNDS interleaved rounds (each runs every setting once, the order rotating), all pinned
# to one CPU with taskset; each process reports its own user+system CPU time (getrusage). Prints
# each setting's median and quartiles and the median (and quartiles) of its per-round ratio to
# `plain`: both sides of a round see the same neighbours, so the paired ratio is the estimate
# least moved by a busy machine.
# -c: instead, counts instructions (valgrind --tool=callgrind; deterministic) of one run of each
# setting, WORK_ROUNDS work rounds (default 4), and keeps the profiles in $OUT (default
# /tmp/alloc_ab) for callgrind_annotate.
# -x adds a setting: another build (an absolute path) of a program (a copy of alloc_ab_sampling from an older
# commit, say) under VAR=VAL[,VAR=VAL...], to compare builds in the same sitting.
set -euo pipefail
n=15 work= cg=0 cpu=0 out=${OUT:-/tmp/alloc_ab} extra=()
while getopts "n:w:cC:x:" o; do
    case $o in
    n) n=$OPTARG ;;
    w) work=$OPTARG ;;
    c) cg=1 ;;
    C) cpu=$OPTARG ;;
    x) extra+=("$OPTARG") ;;
    *) exit 2 ;;
    esac
done
cd "$(dirname "$0")/.."
declare -A bin
while read -r name path; do
    bin[$name]=$path
done < <(cargo bench --no-run --message-format=json \
    --bench alloc_ab_plain --bench alloc_ab_forward --bench alloc_ab_sampling 2>/dev/null |
    jq -r 'select(.executable != null) | "\(.target.name) \(.executable)"')
# name:binary:environment
settings=(
    "plain:alloc_ab_plain:"
    "forward:alloc_ab_forward:"
    "sampling:alloc_ab_sampling:"
    "rate0:alloc_ab_sampling:GORT_MEMPROFILERATE=0"
)
for x in "${extra[@]}"; do
    IFS=: read -r name path envs <<<"$x"
    bin[$name]=$path
    settings+=("$name:$name:${envs//,/ }")
done
# The command line of setting $1 (its environment, then its binary).
cmd() {
    local name b envs
    IFS=: read -r name b envs <<<"$1"
    echo env $envs "${bin[$b]}"
}
if ((cg)); then
    mkdir -p "$out"
    base=
    for s in "${settings[@]}"; do
        name=${s%%:*}
        read -r -a c <<<"$(cmd "$s")"
        ir=$("${c[@]:0:${#c[@]}-1}" valgrind --tool=callgrind --callgrind-out-file="$out/cg.$name" \
            "${c[-1]}" run "${work:-4}" 2>&1 >/dev/null | sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
        [[ -z $base ]] && base=$ir
        printf '%-9s Ir %12s  ratio %s\n' "$name" "$ir" "$(awk -v a="$ir" -v b="$base" 'BEGIN {printf "%.4f", a / b}')"
    done
    exit 0
fi
declare -A vals ratios
k=${#settings[@]}
for ((r = 0; r < n; r++)); do
    declare -A this=()
    for ((i = 0; i < k; i++)); do
        s=${settings[$(((i + r) % k))]}
        read -r -a c <<<"$(cmd "$s")"
        v=$(taskset -c "$cpu" "${c[@]}" run $work | sed -n 's/.*cpu_us=\([0-9]*\).*/\1/p')
        this[${s%%:*}]=$v
        vals[${s%%:*}]+="$v "
    done
    for s in "${settings[@]}"; do
        name=${s%%:*}
        ratios[$name]+="$(awk -v a="${this[$name]}" -v b="${this[plain]}" 'BEGIN {printf "%.4f", a / b}') "
    done
done
quart() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {printf "%s %s %s\n", a[int((NR+3)/4)], a[int((NR+1)/2)], a[int((3*NR+3)/4)]}'; }
echo "$n interleaved rounds on CPU $cpu, user+system CPU time per process (ms: q1 median q3; ratio to plain: per-round median, q1-q3)"
for s in "${settings[@]}"; do
    name=${s%%:*}
    read -r q1 med q3 < <(quart <<<"${vals[$name]}")
    read -r r1 rm r3 < <(quart <<<"${ratios[$name]}")
    printf '%-9s %8.1f %8.1f %8.1f   ratio %s (%s-%s)\n' "$name" "$(bc -l <<<"$q1/1000")" "$(bc -l <<<"$med/1000")" "$(bc -l <<<"$q3/1000")" "$rm" "$r1" "$r3"
done
