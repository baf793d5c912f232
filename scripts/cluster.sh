#!/usr/bin/env bash
# cluster.sh start DIR N | stop DIR — a local reef cluster for `make run`.
# Peers run in the background on 127.0.0.1..N, ports 7400 (data) and 7401
# (gossip) on each address, with their data, key and logs under DIR.
# REEF_SERVE_FLAGS adds flags to every peer's `reef serve`.
set -euo pipefail
cmd=${1:-}; dir=${2:-run}; n=${3:-6}
bin=$(cd "$(dirname "$0")/.." && pwd)/bin/reef

# running PIDFILE: the peer of DIR/peerN.pid is up. A pid that is alive is
# not enough: a peer killed with -9 while it serves a mount takes a moment
# to go (until then its pid still answers kill -0, and a zombie's does
# until it is reaped), and a pid may be reused. The process must still
# have its command line, with --data DIR/peerN in it.
running() {
	local pid
	[ -f "$1" ] || return 1
	pid=$(cat "$1")
	kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "${1%.pid}"
}

# gone PIDFILE: waits up to 10 s for the process of a peer that is not
# running any more (exiting, a zombie) to disappear: until then it holds
# its data directory's lock and its ports.
gone() {
	local pid
	[ -f "$1" ] || return 0
	pid=$(cat "$1")
	for _ in $(seq 1 100); do
		[ -d "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 0
		sleep 0.1
	done
	echo "warning: an earlier process of ${1%.pid} ($pid) is still exiting" >&2
}

case "$cmd" in
start)
	mkdir -p "$dir/logs"
	# A module boundary: go's ./... patterns (make vet, make test) stop here
	# instead of walking into the mounts, where users keep their own trees
	# (Go's own sources untarred there broke `go vet ./...`).
	[ -e "$dir/go.mod" ] || printf 'module reef.invalid/run\n' >"$dir/go.mod"
	[ -f "$dir/volume.key" ] || "$bin" init --key "$dir/volume.key" >/dev/null
	for i in $(seq 1 "$n"); do
		pidf="$dir/peer$i.pid"
		if running "$pidf"; then continue; fi
		gone "$pidf"
		join=(); [ "$i" -gt 1 ] && join=(--join 127.0.0.1:7401)
		mnt=()
		if [ "$i" -le 2 ] && [ ! -e /dev/fuse ]; then
			[ "$i" = 1 ] && echo "warning: no /dev/fuse on this machine: starting the peers without mounts" >&2
		elif [ "$i" -le 2 ]; then
			m="$dir/mnt$i"; [ "$i" = 1 ] && m="$dir/mnt"
			fusermount3 -uz "$m" 2>/dev/null || true
			mkdir -p "$m"; mnt=(--mount "$m")
		fi
		: > "$dir/logs/peer$i.out"
		nohup "$bin" serve --data "$dir/peer$i" --key "$dir/volume.key" --name "peer$i" \
			--listen "127.0.0.$i:7400" --gossip "127.0.0.$i:7401" "${join[@]}" "${mnt[@]}" ${REEF_SERVE_FLAGS:-} \
			>"$dir/logs/peer$i.out" 2>"$dir/logs/peer$i.log" </dev/null &
		echo $! > "$pidf"
	done
	for i in $(seq 1 "$n"); do
		for _ in $(seq 1 100); do
			grep -q ' ready: ' "$dir/logs/peer$i.out" 2>/dev/null && break
			if ! running "$dir/peer$i.pid"; then echo "peer$i failed to start:"; tail -5 "$dir/logs/peer$i.log"; exit 1; fi
			sleep 0.1
		done
	done
	sleep 1
	"$bin" status --peer 127.0.0.1:7400 || true
	cat <<TXT

A local reef cluster of $n peers is running (data, key and logs in $dir).
  mounted at: $dir/mnt          (peer1; the same drive is also mounted at $dir/mnt2 by peer2)
  key:        $dir/volume.key
  peers:      127.0.0.1:7400 ... 127.0.0.$n:7400 (commands use 127.0.0.1:7400 by default)
Try:
  cp -a ~/some/dir $dir/mnt/ && ls -l $dir/mnt2/   # the same tree through the other mount
  bin/reef put FILE                  # prints the file's address
  bin/reef get ADDRESS -o COPY       # reads it back
  bin/reef status                    # members, usage
  bin/reef health                    # is every chunk fully redundant?
  kill -9 \$(cat $dir/peer3.pid)      # any 2 of the 6 peers can be lost
  make stop                          # stops the cluster (data stays in $dir)
TXT
	;;
stop)
	shopt -s nullglob
	for pidf in "$dir"/peer*.pid; do
		if running "$pidf"; then kill -TERM "$(cat "$pidf")" 2>/dev/null || true; fi
	done
	for pidf in "$dir"/peer*.pid; do
		for _ in $(seq 1 100); do running "$pidf" || break; sleep 0.1; done
		running "$pidf" && kill -KILL "$(cat "$pidf")" 2>/dev/null || true
		rm -f "$pidf"
	done
	echo "local cluster stopped"
	;;
*)
	echo "usage: $0 start DIR N | stop DIR" >&2; exit 2 ;;
esac
