#!/usr/bin/env bash
# bench-ab.sh — A/B one operation through the mount of fresh clusters built
# from different reef binaries, alternating them, with the CPU time each peer
# spent on it.
#
#   scripts/bench-ab.sh ACTION ROUNDS BIN...
#
# ACTION is one of
#   write   dd of SIZE_MB (1024) MiB of random bytes into the mount, conv=fsync
#   read    the same file written first, page cache dropped, then dd to /dev/null
#   untar   tar -xf of the first N_UNTAR (10000) files of Go's src
#   small   create+write+close of N_SMALL (10000) files of 4 KiB (python3)
#   medium  the same for N_MEDIUM (1000) files of MEDIUM_KB (200) KiB: past
#           the namespace's inline limit, each file is stored as chunks
#   idle    nothing for IDLE_SECONDS (20): what the cluster costs at rest
# Every run starts a fresh 6-peer cluster (k=4, m=2) on 127.0.0.1..6 with a
# mount on peer 1, so no run profits from the data or caches of another
# (convergent encryption would dedup a second write of the same bytes). For
# each round every BIN runs once, in the order given. Prints one line per
# run: the rate, the wall time, and user+system CPU seconds of each peer
# during the operation, then the machine's busy CPU seconds. With PROFILE_DIR
# set, CPU profiles of PROFILE_PEERS (1 2) are taken for PROFILE_SECONDS (15)
# from the start of the operation. With METRICS_DIR set, every peer's
# /metrics is saved after the operation. With FAULTS set, each peer's minor
# page faults and context switches (all threads) during it are printed too. With PERF_FILE set, `perf record -a -g`
# samples the whole machine into it for PROFILE_SECONDS from the start
# (PERF_ARGS replaces "-a -g": "-a -g -e page-faults" counts faults instead). MOUNT_ENV and PEER_ENV are
# VAR=value words set for the mounting peer and the others. With MOUNT2 set,
# peer 2 mounts too (idle), as in bench-fs: every change is then pushed to it. Meant for a
# quiet machine: these VMs are noisy, compare runs of one invocation only.
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 write|read|untar|small|medium|idle ROUNDS BIN..." >&2; exit 2; }
act=$1 rounds=$2
shift 2
case "$act" in write | read | untar | small | medium | idle) ;; *) echo "bench-ab: unknown action $act" >&2; exit 2 ;; esac
size_mb=${SIZE_MB:-1024}
n_untar=${N_UNTAR:-10000}
n_small=${N_SMALL:-10000}
file_kb=4
if [ "$act" = medium ]; then n_small=${N_MEDIUM:-1000} file_kb=${MEDIUM_KB:-200}; fi
export PATH=$PATH:/usr/local/go/bin
fusermount=$(command -v fusermount3 || command -v fusermount) || { echo "bench-ab: no fusermount3 (make deps)" >&2; exit 1; }
work=$(mktemp -d "${BENCH_DIR:-/tmp}/reef-ab.XXXXXX")
pids=()
stop_cluster() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do
		for _ in $(seq 1 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
	done
	pids=()
	for m in mnt mnt2; do
		if grep -qs " $work/c/$m " /proc/mounts; then "$fusermount" -uz "$work/c/$m" || true; fi
	done
	grep -qs " $work/" /proc/mounts || rm -rf "$work/c"
}
trap 'stop_cluster; grep -qs " $work/" /proc/mounts || rm -rf "$work"' EXIT

head -c $((size_mb << 20)) /dev/urandom >"$work/src"
if [ "$act" = untar ]; then
	goroot=$(go env GOROOT)
	(cd "$goroot" && find src -type f | LC_ALL=C sort | awk -v n="$n_untar" 'NR <= n') >"$work/list"
	tar cf "$work/src.tar" -C "$goroot" -T "$work/list"
	n_untar=$(wc -l <"$work/list")
fi

cpu() { local p; for p in "${pids[@]}"; do awk '{printf "%d %d ", $14, $15}' "/proc/$p/stat"; done; }
faults() { local p; for p in "${pids[@]}"; do awk '{printf "%d ", $10}' "/proc/$p/stat"; done; }
switches() { local p; for p in "${pids[@]}"; do cat /proc/$p/task/*/status | awk '/^(nonv|v)oluntary_ctxt_switches/ { n += $2 } END { printf "%d ", n }'; done; }
busy() { awk '/^cpu / { print $2 + $3 + $4 + $6 + $7 + $8 }' /proc/stat; }

run() {
	local bin=$1 d=$work/c i base t0 t1 el
	mkdir -p "$d/mnt" "$d/mnt2"
	"$bin" init --key "$d/key" >/dev/null
	base=$((8400 + 2 * (RANDOM % 100)))
	for i in 1 2 3 4 5 6; do
		local extra=()
		[ "$i" -gt 1 ] && extra+=(--join "127.0.0.1:$((base + 1))")
		[ "$i" = 1 ] && extra+=(--mount "$d/mnt")
		[ "$i" = 2 ] && [ -n "${MOUNT2:-}" ] && extra+=(--mount "$d/mnt2")
		local envs=()
		if [ "$i" = 1 ]; then envs=(${MOUNT_ENV:-}); else envs=(${PEER_ENV:-}); fi
		env "${envs[@]}" setsid "$bin" serve --data "$d/p$i" --key "$d/key" --name "peer$i" \
			--listen "127.0.0.$i:$base" --gossip "127.0.0.$i:$((base + 1))" --k 4 --m 2 \
			"${extra[@]}" --log-level warn >"$d/p$i.out" 2>"$d/p$i.log" </dev/null &
		pids+=($!)
	done
	for i in 1 2 3 4 5 6; do
		for _ in $(seq 1 300); do grep -q ' ready: ' "$d/p$i.out" && break; sleep 0.1; done
		grep -q ' ready: ' "$d/p$i.out" || { tail -n 5 "$d/p$i.log" >&2; echo "bench-ab: peer $i not ready" >&2; exit 1; }
	done
	sleep 2
	if [ "$act" = read ]; then
		dd if="$work/src" of="$d/mnt/f" bs=1M conv=fsync status=none
	fi
	sync
	if [ "$act" = read ]; then echo 3 >/proc/sys/vm/drop_caches; sleep 1; fi
	local c0 c1 b0 b1
	local f0 f1 s0 s1
	f0=($(faults)) s0=($(switches))
	c0=($(cpu)) b0=$(busy) t0=$(date +%s.%N)
	if [ -n "${PROFILE_DIR:-}" ]; then
		mkdir -p "$PROFILE_DIR"
		for i in ${PROFILE_PEERS:-1 2}; do
			curl -s -o "$PROFILE_DIR/$act-peer$i.pprof" "http://127.0.0.$i:$base/debug/pprof/profile?seconds=${PROFILE_SECONDS:-15}" &
		done
	fi
	local perfpid=
	if [ -n "${PERF_FILE:-}" ]; then
		perf record ${PERF_ARGS:--a -g} -o "$PERF_FILE" -- sleep "${PROFILE_SECONDS:-15}" >/dev/null 2>&1 &
		perfpid=$!
	fi
	case "$act" in
	write) dd if="$work/src" of="$d/mnt/f" bs=1M conv=fsync status=none ;;
	read) dd if="$d/mnt/f" of=/dev/null bs=1M status=none ;;
	idle) sleep "${IDLE_SECONDS:-20}" ;;
	untar) ${WRAP:-} tar xf "$work/src.tar" -C "$d/mnt" ;;
	small | medium) python3 -c 'import os, sys
d, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) * 1024
os.mkdir(d)
for i in range(n):
    fd = os.open("%s/f%05d" % (d, i), os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
    os.write(fd, os.urandom(size))
    os.close(fd)' "$d/mnt/small" "$n_small" "$file_kb" ;;
	esac
	t1=$(date +%s.%N) c1=($(cpu)) b1=$(busy)
	f1=($(faults)) s1=($(switches))
	[ -z "$perfpid" ] || wait "$perfpid" || true
	if [ -n "${METRICS_DIR:-}" ]; then
		mkdir -p "$METRICS_DIR"
		for i in 1 2 3 4 5 6; do curl -s -o "$METRICS_DIR/$act-peer$i.txt" "http://127.0.0.$i:$base/metrics" || true; done
	fi
	el=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
	if [ "$act" = untar ] || [ "$act" = small ] || [ "$act" = medium ]; then
		[ "$act" = untar ] || n_untar=$n_small
		printf '%-28s %8.0f files/s %7.2f s  cpu-s' "$(basename "$bin")" "$(awk -v n="$n_untar" -v e="$el" 'BEGIN { print n / e }')" "$el"
	else
		printf '%-28s %8.1f MB/s    %7.2f s  cpu-s' "$(basename "$bin")" "$(awk -v n="$size_mb" -v e="$el" 'BEGIN { print n * 1.048576 / e }')" "$el"
	fi
	for i in 0 1 2 3 4 5; do
		awk -v a="${c0[2 * i]}" -v b="${c1[2 * i]}" -v c="${c0[2 * i + 1]}" -v d="${c1[2 * i + 1]}" \
			'BEGIN { printf " %.1f+%.1f", (b - a) / 100, (d - c) / 100 }'
	done
	awk -v a="$b0" -v b="$b1" 'BEGIN { printf "  machine busy %.1f\n", (b - a) / 100 }'
	if [ -n "${FAULTS:-}" ]; then
		printf '%-28s minor faults' ''
		for i in 0 1 2 3 4 5; do printf ' %dk' $(((f1[i] - f0[i]) / 1000)); done
		printf '; context switches'
		for i in 0 1 2 3 4 5; do printf ' %dk' $(((s1[i] - s0[i]) / 1000)); done
		echo
	fi
	stop_cluster
}

echo "# bench-ab: $act, $rounds rounds, $(nproc) cores, $(date -u '+%F %T UTC'); cpu-s = user+system per peer 1..6 (peer 1 mounts)"
for _ in $(seq 1 "$rounds"); do
	for b in "$@"; do run "$b"; done
done
