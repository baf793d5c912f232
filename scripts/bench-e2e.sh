#!/usr/bin/env bash
# bench-e2e.sh — `reef put` and `reef get` of SIZE_MB (default 1024) MiB into a
# 6-peer loopback cluster, beside dd to and from local disk in the same run.
# Prints MB/s and the ratio against dd. Used by `make bench`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin/reef
size_mb=${SIZE_MB:-1024}
peers=${PEERS:-6}
work=$(mktemp -d "${BENCH_DIR:-/tmp}/reef-bench.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
mbps() { awk -v mb="$1" -v s="$2" 'BEGIN { printf "%.0f", mb / s }'; }

"$bin" init --key "$work/key" >/dev/null
base=$((7600 + RANDOM % 200))
for i in $(seq 1 "$peers"); do
	join=(); [ "$i" -gt 1 ] && join=(--join "127.0.0.1:$((base + 1))")
	"$bin" serve --data "$work/p$i" --key "$work/key" --listen "127.0.0.$i:$base" --gossip "127.0.0.$i:$((base + 1))" \
		"${join[@]}" --log-level warn >"$work/p$i.out" 2>"$work/p$i.log" &
	pids+=($!)
done
for i in $(seq 1 "$peers"); do
	for _ in $(seq 1 100); do grep -q ' ready: ' "$work/p$i.out" && break; sleep 0.1; done
done
sleep 2
export REEF_PEER=127.0.0.1:$base

head -c $((size_mb << 20)) /dev/urandom > "$work/src"
sync

t0=$(now); dd if="$work/src" of="$work/dd.out" bs=4M conv=fsync status=none; t1=$(now)
dd_w=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
t0=$(now); dd if="$work/dd.out" of=/dev/null bs=4M status=none; t1=$(now)
dd_r=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
rm -f "$work/dd.out"

t0=$(now); addr=$("$bin" put -q "$work/src"); t1=$(now)
put=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
t0=$(now); "$bin" get -q "$addr" -o - >/dev/null; t1=$(now)
get=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
t0=$(now); "$bin" get -q "$addr" -o "$work/back"; t1=$(now)
getf=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
cmp -s "$work/src" "$work/back" || { echo "bench: read-back differs!"; exit 1; }

echo "# $(date -u +%F) $(nproc) cores, $peers peers k=4 m=2 on loopback, ${size_mb} MiB random file"
printf "%-34s %8s %10s\n" "operation" "MB/s" "vs dd"
printf "%-34s %8s %10s\n" "dd write (conv=fsync)" "$(mbps "$size_mb" "$dd_w")" "1.00"
printf "%-34s %8s %10s\n" "reef put" "$(mbps "$size_mb" "$put")" "$(awk -v a="$dd_w" -v b="$put" 'BEGIN { printf "%.2f", a / b }')"
printf "%-34s %8s %10s\n" "dd read (page cache warm)" "$(mbps "$size_mb" "$dd_r")" "1.00"
printf "%-34s %8s %10s\n" "reef get -o - (to /dev/null)" "$(mbps "$size_mb" "$get")" "$(awk -v a="$dd_r" -v b="$get" 'BEGIN { printf "%.2f", a / b }')"
printf "%-34s %8s %10s\n" "reef get -o FILE (fsync'd)" "$(mbps "$size_mb" "$getf")" "$(awk -v a="$dd_r" -v b="$getf" 'BEGIN { printf "%.2f", a / b }')"
