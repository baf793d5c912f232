package store

import (
	"sync"
	"time"

	"github.com/reefproject/reef/addr"
)

// Pins tell a chunk collector (the peer's garbage collection) what this
// store is using that the namespace may not reference yet, or no more:
//   - the chunks of uploads in progress, from before their first shard is
//     written (or a stored zero chunk reused) until PinLinger after the
//     upload ends, by which time the caller has committed the root or
//     given up;
//   - the roots that Pin names, until as many Unpin calls: a file open for
//     writing reads its unchanged blocks from its old version and a
//     rewrite reuses that version's chunks, even after another peer
//     replaced it.
type pins struct {
	mu     sync.Mutex
	chunks map[addr.Addr]int       // in-flight uploads' chunks, by upload count
	linger map[addr.Addr]time.Time // chunks of ended uploads, until then
	roots  map[addr.Addr]int
}

// PinLinger is how long an ended upload's chunks stay pinned.
const PinLinger = 10 * time.Second

func (p *pins) chunk(a addr.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.chunks == nil {
		p.chunks = map[addr.Addr]int{}
	}
	p.chunks[a]++
}

func (p *pins) release(as []addr.Addr) {
	if len(as) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.linger == nil {
		p.linger = map[addr.Addr]time.Time{}
	}
	until := time.Now().Add(PinLinger)
	for _, a := range as {
		if p.chunks[a]--; p.chunks[a] <= 0 {
			delete(p.chunks, a)
		}
		p.linger[a] = until
	}
}

// Pin keeps root (a file's manifest) and everything it references from
// collection until a matching Unpin.
func (s *Store) Pin(root addr.Addr) {
	s.pins.mu.Lock()
	defer s.pins.mu.Unlock()
	if s.pins.roots == nil {
		s.pins.roots = map[addr.Addr]int{}
	}
	s.pins.roots[root]++
}

// Unpin undoes one Pin of root.
func (s *Store) Unpin(root addr.Addr) {
	s.pins.mu.Lock()
	defer s.pins.mu.Unlock()
	if s.pins.roots[root]--; s.pins.roots[root] <= 0 {
		delete(s.pins.roots, root)
	}
}

// Pinned returns the pinned roots (to be walked: every chunk they
// reference is pinned) and chunks (pinned alone).
func (s *Store) Pinned() (roots, chunks []addr.Addr) {
	s.pins.mu.Lock()
	defer s.pins.mu.Unlock()
	now := time.Now()
	for a := range s.pins.roots {
		roots = append(roots, a)
	}
	for a := range s.pins.chunks {
		chunks = append(chunks, a)
	}
	for a, until := range s.pins.linger {
		if now.After(until) {
			delete(s.pins.linger, a)
			continue
		}
		if s.pins.chunks[a] == 0 {
			chunks = append(chunks, a)
		}
	}
	return roots, chunks
}
