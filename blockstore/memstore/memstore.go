// Package memstore is an in-memory implementation of the blockstore API with
// the same semantics as blockstore.Store (copies in and out, ordered List,
// exact Stats, ErrNotFound, ctx and Close handling), for other packages' unit
// tests. Nothing is persisted and values are never corrupt.
package memstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/reefproject/reef/blockstore"
)

var errClosed = errors.New("memstore: store is closed")

// Store is an in-memory shard store. It is safe for concurrent use. The zero
// value is not usable; call New.
type Store struct {
	mu     sync.RWMutex
	m      map[string][]byte
	bytes  int64
	closed bool
}

// New returns an empty Store.
func New() *Store {
	return &Store{m: make(map[string][]byte)}
}

func (s *Store) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed {
		return errClosed
	}
	return nil
}

// Put stores a copy of val under key.
func (s *Store) Put(ctx context.Context, key, val []byte) error {
	if len(key) > blockstore.MaxKeySize {
		return fmt.Errorf("blockstore: put %x: key of %d bytes exceeds %d", key, len(key), blockstore.MaxKeySize)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("blockstore: put %x: %w", key, err)
	}
	if old, ok := s.m[string(key)]; ok {
		s.bytes -= int64(len(old))
	}
	s.m[string(key)] = append([]byte{}, val...)
	s.bytes += int64(len(val))
	return nil
}

// Get returns a copy of the value stored under key, or an error wrapping
// blockstore.ErrNotFound.
func (s *Store) Get(ctx context.Context, key []byte) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, fmt.Errorf("blockstore: get %x: %w", key, err)
	}
	v, ok := s.m[string(key)]
	if !ok {
		return nil, fmt.Errorf("blockstore: get %x: %w", key, blockstore.ErrNotFound)
	}
	return append([]byte{}, v...), nil
}

// Has reports whether key is in the store.
func (s *Store) Has(ctx context.Context, key []byte) (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return false, fmt.Errorf("blockstore: has %x: %w", key, err)
	}
	_, ok := s.m[string(key)]
	return ok, nil
}

// Delete removes key; deleting a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("blockstore: delete %x: %w", key, err)
	}
	if old, ok := s.m[string(key)]; ok {
		s.bytes -= int64(len(old))
		delete(s.m, string(key))
	}
	return nil
}

// List calls fn for each key with the prefix, in ascending key order, with
// the value length. It works on a snapshot taken at the start, so fn may call
// other methods of the Store. The key slice is valid only during the call.
func (s *Store) List(ctx context.Context, prefix []byte, fn func(key []byte, size int64) error) error {
	type entry struct {
		key  string
		size int64
	}
	s.mu.RLock()
	if err := s.check(ctx); err != nil {
		s.mu.RUnlock()
		return fmt.Errorf("blockstore: list %x: %w", prefix, err)
	}
	var entries []entry
	for k, v := range s.m {
		if strings.HasPrefix(k, string(prefix)) {
			entries = append(entries, entry{k, int64(len(v))})
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.key, b.key) })
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("blockstore: list %x: %w", prefix, err)
		}
		if err := fn([]byte(e.key), e.size); err != nil {
			return err
		}
	}
	return nil
}

// Stats returns the number of values and the sum of their lengths.
func (s *Store) Stats() blockstore.Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return blockstore.Stats{Count: int64(len(s.m)), Bytes: s.bytes}
}

// Close marks the store closed; later operations fail. It is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}
