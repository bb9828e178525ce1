#!/usr/bin/env bash
# Interleaved A/B of one runner under several environments: each round runs every setting once,
# in turn (the order rotating with the round, so no setting always runs first), and the table
# gives each setting's median and minimum, and the median's ratio to the first setting's. For
# overheads of a switch on one binary (the machine is noisy: interleaving spreads the noise over
# all settings alike).
#
#   benches/ab_env.sh -n 9 -b target/release/deps/bench_chan-HASH -w pingpong_unbuf \
#       -e GOMAXPROCS=2 -s off: -s timing:GORT_SCHEDTIMING=1 -s wall:BENCH_WALL=1
#
# -s NAME:VAR=VAL[,VAR=VAL...] names a setting (an empty list is the baseline); -e VAR=VAL is
# set for all. The runner prints `<workload> <unit>=<value>`.
set -euo pipefail
n=9 bin= wl= common=() settings=()
while getopts "n:b:w:e:s:" o; do
    case $o in
    n) n=$OPTARG ;;
    b) bin=$OPTARG ;;
    w) wl=$OPTARG ;;
    e) common+=("$OPTARG") ;;
    s) settings+=("$OPTARG") ;;
    *) exit 2 ;;
    esac
done
[[ -n $bin && -n $wl && ${#settings[@]} -gt 0 ]] || { echo "usage: $0 -b BIN -w WORKLOAD -s NAME:ENV... [-n N] [-e VAR=VAL]" >&2; exit 2; }
declare -A vals
k=${#settings[@]}
for ((r = 0; r < n; r++)); do
    for ((i = 0; i < k; i++)); do
        s=${settings[$(((i + r) % k))]}
        name=${s%%:*} envs=${s#*:}
        IFS=, read -ra kv <<<"$envs"
        v=$(env "${common[@]}" "${kv[@]}" "$bin" "$wl" | sed -n 's/.*=\([0-9.]*\)$/\1/p' | head -1)
        vals[$name]+="$v "
    done
done
base=
for s in "${settings[@]}"; do
    name=${s%%:*}
    read -r med min < <(tr ' ' '\n' <<<"${vals[$name]}" | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)], a[1]}')
    [[ -z $base ]] && base=$med
    printf '%-10s median %10s  min %10s  ratio %s\n' "$name" "$med" "$min" "$(awk -v a="$med" -v b="$base" 'BEGIN {printf "%.3f", a / b}')"
done
