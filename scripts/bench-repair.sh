#!/usr/bin/env bash
# bench-repair.sh — time from a peer's loss to full health for SIZE_MB of
# data in an 8-peer loopback cluster (k=4, m=2), and the cost of a scrub pass.
# Used by `make bench`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin/reef
size_mb=${SIZE_MB:-512}
peers=8
work=$(mktemp -d "${BENCH_DIR:-/tmp}/reef-bench-repair.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

"$bin" init --key "$work/key" >/dev/null
base=$((8200 + RANDOM % 200))
mkdir -p "$work/mnt"
trap 'fusermount3 -uz "$work/mnt" 2>/dev/null; cleanup' EXIT
for i in $(seq 1 "$peers"); do
	join=(); [ "$i" -gt 1 ] && join=(--join "127.0.0.1:$((base + 1))")
	mnt=(); [ "$i" = 1 ] && mnt=(--mount "$work/mnt")
	"$bin" serve --data "$work/p$i" --key "$work/key" --name "p$i" --listen "127.0.0.$i:$base" --gossip "127.0.0.$i:$((base + 1))" \
		"${join[@]}" "${mnt[@]}" --repair-after 1s --maint-every 1s --scrub-every 0 --log-level warn >"$work/p$i.out" 2>"$work/p$i.log" &
	pids+=($!)
done
for i in $(seq 1 "$peers"); do
	for _ in $(seq 1 100); do grep -q ' ready: ' "$work/p$i.out" && break; sleep 0.1; done
done
sleep 3
export REEF_PEER=127.0.0.1:$base
head -c $((size_mb << 20)) /dev/urandom > "$work/src"
# Health is about what the namespace references: write through the mount.
cp "$work/src" "$work/mnt/data.bin"
sleep 3
total=$("$bin" health --json | json 'd["chunks_total"]')

# Kill the peer holding the most shards (not p1, which serves the mount).
victim=8
vpid=${pids[$((victim - 1))]}
t0=$(now)
kill -9 "$vpid"; wait "$vpid" 2>/dev/null || true
rebuilt_so_far() {
	local sum=0 b
	for i in $(seq 1 $((peers - 1))); do
		b=$("$bin" status --json --peer "127.0.0.$i:$base" | json 'd["repair"]["repaired_bytes"]')
		sum=$((sum + b))
	done
	echo "$sum"
}
tstart=""
while :; do
	if [ -z "$tstart" ] && [ "$(rebuilt_so_far)" != 0 ]; then tstart=$(now); fi
	h=$("$bin" health --json)
	healthy=$(echo "$h" | json 'd["chunks_healthy"]')
	degraded=$(echo "$h" | json 'd["chunks_degraded"]')
	[ "$degraded" != 0 ] && seen=1
	[ "${seen:-0}" = 1 ] && [ "$healthy" = "$total" ] && break
	sleep 0.2
done
t1=$(now)
rebuilt=0
for i in $(seq 1 $((peers - 1))); do
	b=$("$bin" status --json --peer "127.0.0.$i:$base" | json 'd["repair"]["repaired_bytes"]')
	rebuilt=$((rebuilt + b))
done
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')

t2=$(now)
"$bin" scrub --json >"$work/scrub.json"
t3=$(now)
scrubbed=$(json 'sum(x["bytes"] for x in d)' <"$work/scrub.json")
ssecs=$(awk -v a="$t2" -v b="$t3" 'BEGIN { print b - a }')

echo "# $(date -u +%F) $(nproc) cores, $peers peers k=4 m=2 on loopback, ${size_mb} MiB file ($total chunks), --repair-after 1s"
rsecs=$(awk -v a="${tstart:-$t0}" -v b="$t1" 'BEGIN { print b - a }')
awk -v s="$secs" -v r="$rsecs" -v b="$rebuilt" 'BEGIN { printf "peer loss to full health: %.1f s, of which %.1f s rebuilding (before: gossip declaring the peer dead, the 1 s repair delay, the next pass); %.0f MiB of shards rebuilt: %.0f MB/s while rebuilding, %.0f MB/s over the whole time\n", s, r, b/1048576, b/1e6/r, b/1e6/s }'
awk -v s="$ssecs" -v b="$scrubbed" 'BEGIN { printf "scrub pass over all peers: %.0f MiB verified in %.1f s, %.0f MB/s\n", b/1048576, s, b/1e6/s }'
