#!/usr/bin/env bash
# bench-fs.sh — filesystem benchmarks through a reef FUSE mount beside the
# same operations on a local directory on the same disk, in the same run.
#
# Starts a 6-peer loopback cluster (k=4, m=2) in a fresh temp dir; peer 1
# mounts the volume at A, peer 2 at B. Measures: sequential write (A) and a
# cold read (B), create+write+close of many 4 KiB files and their cold read
# back (B), untar of the Go
# standard library source, a cold `ls -l` of a big directory (B), `rm -rf` of
# it (A), cp --sparse=auto of a sparse file (B), and how long a file created
# through A takes to appear through B.
# Everything (peers, mounts, temp dir) is cleaned up on exit, failure or ^C.
#
# Environment: SIZE_MB (1024) MiB for the sequential steps, N_SMALL (10000)
# small files, N_UNTAR (N_SMALL) files of the Go source tree to untar (the
# first N regular files of $(go env GOROOT)/src in path order; all of them if
# N is larger), N_LS (10000) entries for ls/rm, N_VIS (200) visibility probes,
# N_LOCK (2000) flock+write+unlock rounds,
# STEP_TIMEOUT (600) seconds per command, BENCH_DIR (/tmp) where the temp dir
# goes, REEF_BIN (bin/reef), LOG_LEVEL (warn) of the peers, KEEP=1 keeps the
# temp dir (logs) afterwards.
# Quick run: SIZE_MB=64 N_SMALL=500 N_LS=1000 scripts/bench-fs.sh
set -euo pipefail
export PATH=$PATH:/usr/local/go/bin
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${REEF_BIN:-$root/bin/reef}
size_mb=${SIZE_MB:-1024}
n_small=${N_SMALL:-10000}
n_untar=${N_UNTAR:-$n_small}
n_ls=${N_LS:-10000}
n_vis=${N_VIS:-200}
n_lock=${N_LOCK:-2000}
step_timeout=${STEP_TIMEOUT:-600}
peers=6
cmdline="SIZE_MB=$size_mb N_SMALL=$n_small N_UNTAR=$n_untar N_LS=$n_ls N_VIS=$n_vis N_LOCK=$n_lock STEP_TIMEOUT=$step_timeout $0${*:+ $*}"

die() { echo "bench-fs: $*" >&2; exit 1; }
[ -x "$bin" ] || die "$bin not found: run 'make build' first"
[ -e /dev/fuse ] || die "no /dev/fuse: FUSE is not available here"
fusermount=$(command -v fusermount3 || command -v fusermount) || die "no fusermount3/fusermount (install fuse3; 'make deps')"
command -v go >/dev/null || die "go is needed to build the small-file helper"

work=$(mktemp -d "${BENCH_DIR:-/tmp}/reef-fsbench.XXXXXX")
mA=$work/mnt/a
mB=$work/mnt/b
loc=$work/local
pids=()

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	local p i
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	# The peers unmount on SIGTERM; give them a while, then insist.
	for p in "${pids[@]}"; do
		for i in $(seq 1 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$p" 2>/dev/null; then
			echo "bench-fs: peer pid $p did not stop in 20s after SIGTERM: killing it" >&2
			kill -KILL "$p" 2>/dev/null || true
		fi
	done
	for p in "$mA" "$mB"; do
		if grep -qs " $p " /proc/mounts; then "$fusermount" -uz "$p" 2>/dev/null || umount -l "$p" 2>/dev/null || true; fi
	done
	if [ "${KEEP:-0}" = 1 ]; then
		echo "bench-fs: kept $work" >&2
	else
		# Never let rm walk into a mount that is still there.
		if grep -qs " $work/" /proc/mounts; then
			echo "bench-fs: a mount under $work is still present; not removing $work" >&2
		else
			rm -rf "$work"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'echo "bench-fs: interrupted" >&2; exit 130' INT TERM

now() { date +%s.%N; }
# timed CMD...: runs CMD under the step timeout, sets $elapsed (seconds).
timed() {
	local t0 t1
	t0=$(now)
	timeout --foreground -k 10 "$step_timeout" "$@"
	t1=$(now)
	elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
}
rate() { awk -v n="$1" -v s="$2" 'BEGIN { v = n / s; printf (v >= 100 ? "%.0f" : "%.1f"), v }'; }
drop_caches() {
	timeout 120 sync || true
	{ echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null || true
}
# put KEY VALUE: a result for the table.
put() { printf '%s\n' "$2" >"$work/res/$1"; }
get() { cat "$work/res/$1" 2>/dev/null || true; }
peer_logs() {
	local i
	for i in 1 2; do
		echo "  --- last lines of peer $i's log ($work/p$i.log):" >&2
		tail -n 5 "$work/p$i.log" 2>/dev/null | sed 's/^/  /' >&2 || true
	done
}
# wait_for DESC SECONDS CMD...: polls CMD every 0.1 s until it succeeds.
wait_for() {
	local desc=$1 secs=$2 i
	shift 2
	for i in $(seq 1 $((secs * 10))); do
		"$@" && return 0
		sleep 0.1
	done
	echo "bench-fs: timed out after ${secs}s waiting for $desc" >&2
	return 1
}

mkdir -p "$mA" "$mB" "$loc" "$work/res" "$work/helper"

# --- the helper: small-file loop, directory count, visibility probe ----------
cat >"$work/helper/go.mod" <<'EOF'
module fsbench

go 1.21
EOF
cat >"$work/helper/main.go" <<'EOF'
// fsbench is bench-fs.sh's helper:
//
//	fsbench small DIR N SIZE        creates DIR and N files of SIZE random bytes in it (create, write, close)
//	fsbench count DIR               prints the number of entries of DIR (readdir only, no stat)
//	fsbench readall DIR N           reads every file of DIR (open, read, close); fails unless there are N of SIZE 4096
//	fsbench lock FILE N             N times: flock(LOCK_EX), an 8-byte pwrite of the count, flock(LOCK_UN)
//	fsbench visible A B N TIMEOUT   N times: creates a new file in A, polls for it in B (stat, 1 ms sleep);
//	                                prints p50, p99 and max ms from A's close to B's first successful stat
package main

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"
)

func main() {
	var err error
	switch {
	case len(os.Args) == 5 && os.Args[1] == "small":
		err = small(os.Args[2], atoi(os.Args[3]), atoi(os.Args[4]))
	case len(os.Args) == 3 && os.Args[1] == "count":
		err = count(os.Args[2])
	case len(os.Args) == 4 && os.Args[1] == "readall":
		err = readall(os.Args[2], atoi(os.Args[3]))
	case len(os.Args) == 4 && os.Args[1] == "lock":
		err = lock(os.Args[2], atoi(os.Args[3]))
	case len(os.Args) == 6 && os.Args[1] == "visible":
		var d time.Duration
		if d, err = time.ParseDuration(os.Args[5]); err == nil {
			err = visible(os.Args[2], os.Args[3], atoi(os.Args[4]), d)
		}
	default:
		err = fmt.Errorf("usage: fsbench small DIR N SIZE | count DIR | readall DIR N | lock FILE N | visible A B N TIMEOUT")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fsbench:", err)
		os.Exit(1)
	}
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fsbench:", err)
		os.Exit(2)
	}
	return n
}

func writeFile(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if len(data) > 0 {
		if _, err := f.Write(data); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

func lock(name string, n int) error {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	var b [8]byte
	for i := 0; i < n; i++ {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			return err
		}
		binary.LittleEndian.PutUint64(b[:], uint64(i))
		if _, err := f.WriteAt(b[:], 0); err != nil {
			return err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_UN); err != nil {
			return err
		}
	}
	if _, err := f.ReadAt(b[:], 0); err != nil {
		return err
	}
	if got := binary.LittleEndian.Uint64(b[:]); got != uint64(n-1) {
		return fmt.Errorf("%s holds %d after %d locked writes", name, got, n)
	}
	return nil
}

func small(dir string, n, size int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	buf := make([]byte, size)
	for i := 0; i < n; i++ {
		rng.Read(buf) // distinct content per file: no dedup shortcut
		if err := writeFile(filepath.Join(dir, fmt.Sprintf("f%06d", i)), buf); err != nil {
			return err
		}
	}
	return nil
}

func readall(dir string, n int) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	if len(names) != n {
		return fmt.Errorf("%d entries in %s, want %d", len(names), dir, n)
	}
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if len(b) != 4096 {
			return fmt.Errorf("%s: %d bytes, want 4096", name, len(b))
		}
	}
	return nil
}

func count(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return err
	}
	fmt.Println(len(names))
	return nil
}

func waitStat(name string, timeout time.Duration) (time.Duration, error) {
	t0 := time.Now()
	for {
		_, err := os.Stat(name)
		if err == nil {
			return time.Since(t0), nil
		}
		if !os.IsNotExist(err) {
			return 0, err
		}
		if time.Since(t0) > timeout {
			return 0, fmt.Errorf("%s not visible after %v", name, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

func visible(a, b string, n int, timeout time.Duration) error {
	if err := os.MkdirAll(a, 0o755); err != nil {
		return err
	}
	if _, err := waitStat(b, timeout); err != nil {
		return err
	}
	lat := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("v%05d-%d", i, time.Now().UnixNano())
		if err := writeFile(filepath.Join(a, name), []byte("reef visibility\n")); err != nil {
			return err
		}
		d, err := waitStat(filepath.Join(b, name), timeout)
		if err != nil {
			return fmt.Errorf("probe %d: %w", i, err)
		}
		lat = append(lat, float64(d)/float64(time.Millisecond))
	}
	sort.Float64s(lat)
	pct := func(p float64) float64 { return lat[int(math.Ceil(p/100*float64(n)))-1] }
	fmt.Printf("%.1f %.1f %.1f\n", pct(50), pct(99), lat[n-1])
	return nil
}
EOF
(cd "$work/helper" && GOFLAGS= GOWORK=off go build -o "$work/fsbench" .) || die "could not build the helper"
fsb=$work/fsbench

# --- inputs --------------------------------------------------------------------
goroot=$(go env GOROOT)
head -c $((size_mb << 20)) /dev/urandom >"$work/src"
(cd "$goroot" && find src -type f | LC_ALL=C sort | awk -v n="$n_untar" 'NR <= n') >"$work/gosrc.list"
tar cf "$work/gosrc.tar" -C "$goroot" -T "$work/gosrc.list"
tar_files=$(wc -l <"$work/gosrc.list")
tar_all=$(find "$goroot/src" -type f | wc -l)
tar_dirs=$(sed 's,/[^/]*$,,' "$work/gosrc.list" | sort -u | wc -l)
tar_mb=$(( $(stat -c %s "$work/gosrc.tar") >> 20 ))

# --- the cluster ---------------------------------------------------------------
# Ports: bench-e2e.sh uses 7600..7800, `make run` 7400/7401.
base=$((7820 + 2 * (RANDOM % 80)))
"$bin" init --key "$work/key" >/dev/null
for i in $(seq 1 "$peers"); do
	extra=()
	[ "$i" -gt 1 ] && extra+=(--join "127.0.0.1:$((base + 1))")
	[ "$i" = 1 ] && extra+=(--mount "$mA")
	[ "$i" = 2 ] && extra+=(--mount "$mB")
	# setsid: a ^C on the terminal reaches this script, which stops the peers in order.
	setsid "$bin" serve --data "$work/p$i" --key "$work/key" --name "peer$i" \
		--listen "127.0.0.$i:$base" --gossip "127.0.0.$i:$((base + 1))" --k 4 --m 2 \
		"${extra[@]}" --log-level "${LOG_LEVEL:-warn}" >"$work/p$i.out" 2>"$work/p$i.log" </dev/null &
	pids+=($!)
done
for i in $(seq 1 "$peers"); do
	for _ in $(seq 1 300); do
		grep -q ' ready: ' "$work/p$i.out" && break
		kill -0 "${pids[i - 1]}" 2>/dev/null || { tail -n 20 "$work/p$i.log" >&2; die "peer $i exited during start"; }
		sleep 0.1
	done
	grep -q ' ready: ' "$work/p$i.out" || { tail -n 20 "$work/p$i.log" >&2; die "peer $i not ready after 30s"; }
done
grep -q " ready: .* mount=$mA\$" "$work/p1.out" || die "peer 1 did not report mount=$mA: $(cat "$work/p1.out")"
grep -q " ready: .* mount=$mB\$" "$work/p2.out" || die "peer 2 did not report mount=$mB: $(cat "$work/p2.out")"
grep -qs " $mA " /proc/mounts || die "$mA is not in /proc/mounts"
grep -qs " $mB " /proc/mounts || die "$mB is not in /proc/mounts"
sleep 2

can_drop=no
{ echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null && can_drop=yes

echo "# reef filesystem benchmark — $(date -u '+%F %T UTC')"
echo "# command: $cmdline"
echo "# reef: $("$bin" version 2>/dev/null | head -n 1) ($(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet HEAD 2>/dev/null || echo '+dirty'))"
echo "# machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
echo "# cluster: $peers peers on loopback 127.0.0.1..$peers:$base (gossip $((base + 1))), coding k=4 m=2, one data dir each;"
echo "#          mount A on peer 1, mount B on peer 2; local baseline in $loc ($(df -T "$loc" | awk 'NR == 2 { print $2 " on " $1 }'), the same disk as the peers' data)"
echo "# untar source: the first $tar_files (of $tar_all) regular files of \$(go env GOROOT)/src = $goroot/src in path order, in $tar_dirs directories: ${tar_mb} MiB tar"
echo "# page cache drop (echo 3 > /proc/sys/vm/drop_caches) before cold reads: $can_drop"
echo

# --- the steps -------------------------------------------------------------------
# Each step runs in a subshell with set -e: a failing command ends that step only.
failed=()
broken=""
# healthy: all peers running and both mounts in place; else says what is wrong.
healthy() {
	local i p st rc m
	for i in "${!pids[@]}"; do
		p=${pids[i]}
		st=$(ps -o stat= -p "$p" 2>/dev/null || true)
		if [ -z "$st" ] || [ "${st:0:1}" = Z ]; then
			rc=0
			wait "$p" 2>/dev/null || rc=$?
			broken="peer $((i + 1)) (pid $p) has exited (wait status $rc$([ "$rc" -gt 128 ] && echo ", signal $((rc - 128))")); see $work/p$((i + 1)).log"
			return 1
		fi
	done
	for m in "$mA" "$mB"; do
		if ! grep -qs " $m fuse" /proc/mounts; then
			broken="$m is no longer mounted"
			return 1
		fi
	done
}
run_step() {
	local key=$1 desc=$2 rc
	echo "bench-fs: $desc ..." >&2
	if [ -n "$broken" ] || ! healthy; then
		echo "bench-fs: step '$desc' FAILED: not run, the cluster is broken: $broken" >&2
		failed+=("$key")
		return 0
	fi
	set +e
	(
		set -eE
		trap 'rc=$?; [[ $BASH_COMMAND == return* ]] || echo "bench-fs:   command failed (exit $rc): $BASH_COMMAND" >&2' ERR
		"step_$key"
	)
	rc=$?
	set -e
	if [ "$rc" -ne 0 ]; then
		[ "$rc" = 130 ] && exit 130 # ^C
		local why="exit $rc"
		[ "$rc" = 124 ] || [ "$rc" = 137 ] && why="timed out after ${step_timeout}s"
		echo "bench-fs: step '$desc' FAILED ($why); going on with the others" >&2
		peer_logs
		failed+=("$key")
	fi
	if ! healthy; then
		echo "bench-fs: step '$desc' FAILED: the cluster broke during it: $broken" >&2
		[ "$rc" -ne 0 ] || { peer_logs; failed+=("$key"); }
	fi
}

step_write() {
	# Both start with nothing dirty in the page cache: the source file (just
	# written) and the local copy would otherwise be written back during the
	# next measurement (measured: a reef write of 1 GiB fell from 103 to 61
	# MB/s behind 2 GiB of writeback).
	timeout 120 sync || true
	timed dd if="$work/src" of="$loc/seq" bs=1M conv=fsync status=none
	put write.local "$(rate "$size_mb" "$elapsed")"
	timeout 120 sync || true
	timed dd if="$work/src" of="$mA/seq" bs=1M conv=fsync status=none
	put write.reef "$(rate "$size_mb" "$elapsed")"
}

step_read() {
	drop_caches
	timed dd if="$loc/seq" of=/dev/null bs=1M status=none
	put read.local "$(rate "$size_mb" "$elapsed")"
	local want=$((size_mb << 20))
	[ -e "$mA/seq" ] || { echo "bench-fs:   $mA/seq is missing (did the write fail?)" >&2; return 1; }
	wait_for "seq to show its full size through mount B" 60 \
		sh -c '[ "$(stat -c %s "$1" 2>/dev/null)" = "$2" ]' sh "$mB/seq" "$want"
	drop_caches
	timed dd if="$mB/seq" of=/dev/null bs=1M status=none
	put read.reef "$(rate "$size_mb" "$elapsed")"
	if ! timeout --foreground "$step_timeout" cmp -s "$work/src" "$mB/seq"; then
		echo "bench-fs:   WRONG RESULT: the file read through mount B differs from what was written through A" >&2
		return 1
	fi
	rm -f "$loc/seq" "$mA/seq"
}

step_small() {
	timed "$fsb" small "$loc/small" "$n_small" 4096
	put small.local "$(rate "$n_small" "$elapsed")"
	timed "$fsb" small "$mA/small" "$n_small" 4096
	put small.reef "$(rate "$n_small" "$elapsed")"
	local got
	got=$("$fsb" count "$mA/small")
	[ "$got" = "$n_small" ] || { echo "bench-fs:   WRONG RESULT: $got entries in $mA/small, want $n_small" >&2; return 1; }
}

# step_readsmall reads the small files back, cold: local, then through B.
step_readsmall() {
	drop_caches
	timed "$fsb" readall "$loc/small" "$n_small"
	put readsmall.local "$(rate "$n_small" "$elapsed")"
	wait_for "the $n_small small files on B" 30 bash -c '[ "$("$0" count "$1")" = "$2" ]' "$fsb" "$mB/small" "$n_small" || return 1
	drop_caches
	timed "$fsb" readall "$mB/small" "$n_small"
	put readsmall.reef "$(rate "$n_small" "$elapsed")"
}

step_untar() {
	mkdir "$loc/untar" "$mA/untar"
	timed tar xf "$work/gosrc.tar" -C "$loc/untar"
	put untar.local "$(rate "$tar_files" "$elapsed")"
	timed tar xf "$work/gosrc.tar" -C "$mA/untar"
	put untar.reef "$(rate "$tar_files" "$elapsed")"
	local got
	got=$(timeout --foreground "$step_timeout" find "$mA/untar" -type f | wc -l)
	[ "$got" = "$tar_files" ] || { echo "bench-fs:   WRONG RESULT: $got files under $mA/untar, want $tar_files" >&2; return 1; }
}

ms() { awk -v s="$1" 'BEGIN { printf "%.0f", s * 1000 }'; }
step_ls() {
	"$fsb" small "$loc/lsdir" "$n_ls" 0
	drop_caches
	timed ls -l "$loc/lsdir" >"$work/ls.local"
	put ls.local.s "$elapsed"
	put ls.local "$(ms "$elapsed")"
	timeout --foreground "$step_timeout" "$fsb" small "$mA/lsdir" "$n_ls" 0
	# Wait until B lists all entries (readdir only: no lookups, no attributes cached).
	wait_for "$n_ls entries of lsdir through mount B" 120 \
		sh -c '[ "$("$1" count "$2" 2>/dev/null)" = "$3" ]' sh "$fsb" "$mB/lsdir" "$n_ls"
	drop_caches
	timed ls -l "$mB/lsdir" >"$work/ls.reef"
	put ls.reef.s "$elapsed"
	put ls.reef "$(ms "$elapsed")"
	local f got
	for f in local reef; do
		got=$(($(wc -l <"$work/ls.$f") - 1))
		[ "$got" = "$n_ls" ] || { echo "bench-fs:   WRONG RESULT: ls -l ($f) listed $got entries, want $n_ls" >&2; return 1; }
	done
	if grep -q '?' "$work/ls.reef"; then
		echo "bench-fs:   WRONG RESULT: ls -l through mount B shows unknown attributes:" >&2
		grep -m 3 '?' "$work/ls.reef" >&2
		return 1
	fi
}

step_rm() {
	[ -d "$loc/lsdir" ] || "$fsb" small "$loc/lsdir" "$n_ls" 0
	[ -d "$mA/lsdir" ] || timeout --foreground "$step_timeout" "$fsb" small "$mA/lsdir" "$n_ls" 0
	timed rm -rf "$loc/lsdir"
	put rm.local "$(rate "$n_ls" "$elapsed")"
	timed rm -rf "$mA/lsdir"
	put rm.reef "$(rate "$n_ls" "$elapsed")"
	[ ! -e "$mA/lsdir" ] || { echo "bench-fs:   WRONG RESULT: $mA/lsdir still exists after rm -rf" >&2; return 1; }
	wait_for "lsdir to disappear through mount B" 60 sh -c '! [ -e "$1" ]' sh "$mB/lsdir"
}

# A sparse file (4 x SIZE_MB MiB, made by truncate, one word written a third
# in) copied with cp --sparse=auto through B: st_blocks tells cp it is sparse,
# and SEEK_DATA/SEEK_HOLE let it skip the holes instead of reading zeros.
step_sparse() {
	local sz=$((size_mb * 4)) d
	for d in "$loc" "$mA"; do
		truncate -s "${sz}M" "$d/sparse"
		printf 'a word in the hole' | dd of="$d/sparse" bs=1M seek=$((sz / 3)) conv=notrunc status=none
	done
	wait_for "the sparse file through mount B" 60 sh -c '[ "$(stat -c %s "$1" 2>/dev/null)" = "$2" ]' sh "$mB/sparse" "$((sz << 20))"
	drop_caches
	timed cp --sparse=auto "$loc/sparse" "$work/sparse.local"
	put sparse.local.s "$elapsed"
	put sparse.local "$(ms "$elapsed")"
	timed cp --sparse=auto "$mB/sparse" "$work/sparse.reef"
	put sparse.reef.s "$elapsed"
	put sparse.reef "$(ms "$elapsed")"
	local used
	used=$(du -k "$work/sparse.reef" | cut -f1)
	cmp -s "$work/sparse.local" "$work/sparse.reef" || { echo "bench-fs:   WRONG RESULT: the copy through B differs from the local one" >&2; return 1; }
	rm -f "$work/sparse.local" "$work/sparse.reef"
	[ "$used" -lt 65536 ] || { echo "bench-fs:   WRONG RESULT: the copy through B takes $used KiB: written dense" >&2; return 1; }
}

# step_lock: flock, write, unlock in a loop on one file (each unlock makes
# the write durable first on reef, so the next holder on any mount sees it).
step_lock() {
	timed "$fsb" lock "$loc/lockfile" "$n_lock"
	put lock.local "$(rate "$n_lock" "$elapsed")"
	timed "$fsb" lock "$mA/lockfile" "$n_lock"
	put lock.reef "$(rate "$n_lock" "$elapsed")"
}

step_vis() {
	local r
	r=$(timeout --foreground "$step_timeout" "$fsb" visible "$mA/vis" "$mB/vis" "$n_vis" 30s)
	put vis "$r"
}

run_step write "sequential write of $size_mb MiB (dd bs=1M conv=fsync, local then mount A)"
run_step read "sequential read of $size_mb MiB (dd bs=1M, local then mount B, cold)"
run_step small "create+write+close of $n_small 4 KiB files (local then mount A)"
run_step readsmall "read back of the $n_small 4 KiB files (local, then mount B, cold)"
run_step untar "untar of $tar_files files of Go's src (local then mount A)"
run_step ls "ls -l of a $n_ls-entry directory (local, then mount B, cold)"
run_step rm "rm -rf of the $n_ls-entry directory (local then mount A)"
run_step sparse "cp --sparse=auto of a $((size_mb * 4)) MiB sparse file (local, then mount B)"
run_step lock "flock + 8-byte write + unlock, $n_lock times on one file (local then mount A)"
run_step vis "cross-mount visibility, $n_vis probes (A to B)"

# --- the table -------------------------------------------------------------------
is_failed() { local f; for f in "${failed[@]}"; do [ "$f" = "$1" ] && return 0; done; return 1; }
row() { printf "%-50s %16s %16s %10s\n" "$1" "$2" "$3" "$4"; }
# line KEY LABEL UNIT: a throughput row; ratio = reef/local (1.00 = as fast as local disk).
line() {
	local key=$1 label=$2 unit=$3 r l ratio="-"
	r=$(get "$key.reef"); l=$(get "$key.local")
	is_failed "$key" && r=""
	[ -n "$r" ] && [ -n "$l" ] && ratio=$(awk -v r="$r" -v l="$l" 'BEGIN { printf "%.2f", r / l }')
	is_failed "$key" && ratio=FAILED
	row "$label" "${r:-FAILED} ${r:+$unit}" "${l:-FAILED} ${l:+$unit}" "$ratio"
}
row "operation" "reef" "local" "reef/local"
line write "seq write ${size_mb} MiB (dd bs=1M fsync), A" "MB/s"
line read "seq read ${size_mb} MiB (dd bs=1M, cold), B" "MB/s"
line small "create+write+close ${n_small} x 4 KiB, A" "files/s"
line readsmall "read back ${n_small} x 4 KiB (cold), B" "files/s"
line untar "untar ${tar_files} files of Go src, A" "files/s"
r=$(get ls.reef); l=$(get ls.local); ratio="-"
is_failed ls && r=""
[ -n "$r" ] && [ -n "$l" ] && ratio=$(awk -v r="$(get ls.reef.s)" -v l="$(get ls.local.s)" 'BEGIN { printf "%.2f", l / r }')
is_failed ls && ratio=FAILED
row "ls -l ${n_ls} entries (cold), B" "${r:-FAILED} ${r:+ms}" "${l:-FAILED} ${l:+ms}" "$ratio"
line rm "rm -rf ${n_ls} files, A" "files/s"
r=$(get sparse.reef); l=$(get sparse.local); ratio="-"
is_failed sparse && r=""
[ -n "$r" ] && [ -n "$l" ] && ratio=$(awk -v r="$(get sparse.reef.s)" -v l="$(get sparse.local.s)" 'BEGIN { printf "%.2f", l / r }')
is_failed sparse && ratio=FAILED
line lock "flock+write+unlock x ${n_lock}, A" "ops/s"
row "cp --sparse=auto $((size_mb * 4)) MiB sparse file, B" "${r:-FAILED} ${r:+ms}" "${l:-FAILED} ${l:+ms}" "$ratio"
v=$(get vis)
if [ -n "$v" ] && ! is_failed vis; then
	read -r p50 p99 pmax <<<"$v"
	row "visibility A->B, ${n_vis} probes: p50 / p99" "$p50 / $p99 ms" "n/a" "-"
else
	row "visibility A->B, ${n_vis} probes: p50 / p99" "FAILED" "n/a" "FAILED"
fi
echo
echo "# reef/local: reef's speed over local disk's (for ls -l and cp --sparse: local time / reef time); below 1 = slower than local."
echo "# create+write+close and untar do not fsync (neither on reef nor local); the seq write does (conv=fsync)."
echo "# ls -l: entries made through A; timed at B's first ls -l after B listed the names (readdir only) and caches were dropped."
echo "# visibility: from close() on A returning to the first successful stat() on B (polled every 1 ms; max ${pmax:-?} ms);"
echo "#   no local baseline: a local directory has no second view to wait for."
if [ "${#failed[@]}" -gt 0 ]; then
	echo "# FAILED steps: ${failed[*]} (details above on stderr)${broken:+; cluster broken: $broken}"
	exit 1
fi
