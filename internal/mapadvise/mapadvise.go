// Package mapadvise stops badger's memory-mapped write-ahead files from
// multiplying the bytes written to disk.
//
// badger appends to its value log (*.vlog) and memtable logs (*.mem)
// through shared memory maps and makes each commit durable with msync. On
// kernels whose page cache uses large folios (Linux 6.x on ext4 here), a
// page faulted in through a map is part of a folio of up to a few hundred
// KiB, and msync writes back every dirty folio whole: each commit rewrites
// the partly filled folio at the tail of the log. Measured on this project's
// CI machine: 64 MiB appended in 256 KiB pieces with msync after each
// wrote 300 MiB to the device; 64 MiB of 256 KiB badger puts wrote 301 MiB.
// MADV_RANDOM on the map turns off fault read-ahead, so pages are faulted
// in one by one and msync writes back only what changed (65 MiB in the same
// test, as with pwrite+fdatasync).
//
// badger does not expose its maps, so Apply finds them in
// /proc/self/maps by file name: every *.mem map (memtable logs, appended
// through the map) of a directory gets MADV_RANDOM. Value logs (*.vlog)
// get MADV_NORMAL: reef's badger appends them with pwrite(2), not through
// the map (third_party/github.com/dgraph-io/badger/REEF-PATCHES.md), so
// their map only reads, and reads want read-ahead (a cold 1 GiB read
// through a mount of a 6-peer cluster, A/B twice: 211/218 -> 235/236 MB/s
// once the newest value log was no longer advised MADV_RANDOM). Watch
// re-applies this when the
// directory changes, because badger maps a new file whenever a log fills
// up. Elsewhere than Linux both are no-ops.
package mapadvise

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// adviseFn is madvise; tests count the calls.
var adviseFn = madvise

// mapping is one line of /proc/self/maps that names a file.
type mapping struct {
	start, end uintptr
	path       string
}

// logMaps returns the maps of *.vlog and *.mem files directly in dir.
func logMaps(maps []byte, dir string) []mapping {
	dir = filepath.Clean(dir) + "/"
	var out []mapping
	sc := bufio.NewScanner(bytes.NewReader(maps))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// 7f3c1c000000-7f3c2c000000 rw-s 00000000 fd:01 1234   /path/000002.vlog
		f := strings.Fields(sc.Text())
		if len(f) < 6 {
			continue
		}
		path := strings.Join(f[5:], " ")
		if !strings.HasPrefix(path, dir) || strings.Contains(path[len(dir):], "/") {
			continue
		}
		if !strings.HasSuffix(path, ".vlog") && !strings.HasSuffix(path, ".mem") {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		s, err1 := strconv.ParseUint(lo, 16, 64)
		e, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || e <= s {
			continue
		}
		out = append(out, mapping{start: uintptr(s), end: uintptr(e), path: path})
	}
	return out
}

// advice decides the advice for each map: true is MADV_RANDOM (a log
// appended through its map), false MADV_NORMAL (a map that only reads).
func advice(ms []mapping) []bool {
	out := make([]bool, len(ms))
	for i, m := range ms {
		out[i] = strings.HasSuffix(m.path, ".mem")
	}
	return out
}

// Apply advises the current maps of dir's badger logs.
func Apply(dir string) error {
	return apply(dir, nil)
}

// apply is Apply that skips maps already given the same advice (recorded
// in seen, when not nil): every madvise takes the process's memory-map
// lock for writing, which stalls its page faults, so the periodic pass
// only advises what is new or changed.
func apply(dir string, seen map[mapping]bool) error {
	if !supported {
		return nil
	}
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return err
	}
	ms := logMaps(b, dir)
	now := make(map[mapping]bool, len(ms))
	var first error
	for i, random := range advice(ms) {
		now[ms[i]] = random
		if prev, ok := seen[ms[i]]; ok && prev == random {
			continue
		}
		if err := adviseFn(ms[i].start, ms[i].end-ms[i].start, random); err != nil {
			delete(now, ms[i]) // try again next pass
			if first == nil {
				first = err
			}
		}
	}
	if seen != nil {
		clear(seen)
		for m, r := range now {
			seen[m] = r
		}
	}
	return first
}

// fullEvery is how often Watch re-reads the maps even when dir did not
// change (badger also remaps a file it truncates).
const fullEvery = 2 * time.Second

// Watch calls Apply now and then every interval until stop is closed; it
// returns the first error of the first call (later ones are ignored: a map
// can vanish between reading the list and advising it). A pass reads
// /proc/self/maps, whose size grows with the process's maps (a tenth of a
// peer's CPU with two stores watched every 100 ms), so a pass only runs
// when a file was added to or removed from dir (its mtime changed: badger
// maps a new log file) or fullEvery has passed.
func Watch(dir string, interval time.Duration, stop <-chan struct{}) error {
	if !supported {
		return nil
	}
	seen := map[mapping]bool{}
	mod := dirMod(dir)
	err := apply(dir, seen)
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				m := dirMod(dir)
				if m.Equal(mod) && now.Sub(last) < fullEvery {
					continue
				}
				mod, last = m, now
				_ = apply(dir, seen)
			}
		}
	}()
	return err
}

// dirMod is dir's modification time (zero when it cannot be read).
func dirMod(dir string) time.Time {
	fi, err := os.Stat(dir)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}
