package blockstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/reefproject/reef/internal/badgerlog"
	"github.com/reefproject/reef/internal/mapadvise"
)

// ErrNotFound is returned (possibly wrapped) when a key is not in the store.
var ErrNotFound = errors.New("blockstore: not found")

// ErrCorrupt is returned (wrapped) when a stored value fails verification:
// checksum mismatch, malformed index record, or an unreadable value.
var ErrCorrupt = errors.New("blockstore: corrupt value")

// errClosed is returned by every operation on a closed Store.
var errClosed = errors.New("blockstore: store is closed")

// MaxKeySize is the largest key accepted by Put, in bytes.
const MaxKeySize = 256

// GCInterval is how often the background value-log GC runs.
const GCInterval = time.Minute

// gcDiscardRatio is the fraction of a value-log file that must be garbage
// for GC to rewrite it.
const gcDiscardRatio = 0.5

// Key namespaces inside badger.
const (
	nsMeta  = 'm'
	nsValue = 'v'
)

// Index record format.
const (
	formatV1  = 1
	recordLen = 1 + 4 + 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Options configures Open.
type Options struct {
	// Logger receives badger's log lines (through a small adapter) and the
	// store's own warnings. Nil discards them.
	Logger *slog.Logger
	// ReadOnly opens the store read-only: Put and Delete fail and no
	// background GC runs. Badger refuses to open a directory read-only if it
	// was not closed cleanly.
	ReadOnly bool
	// SyncEvery bounds how long a PutLazy or Delete stays only in the page
	// cache: a background loop syncs within this time of any write. 0 means
	// DefaultSyncEvery.
	SyncEvery time.Duration
}

// Stats summarises a Store's contents.
type Stats struct {
	// Unsynced is the number of writes and deletes not yet on stable
	// storage (lazy ones, until the next sync).
	Unsynced int64
	// Count is the number of stored values.
	Count int64
	// Bytes is the sum of the stored values' lengths (user bytes, not disk
	// usage).
	Bytes int64
}

// Store is a durable, checksummed shard store backed by badger. It is safe
// for concurrent use.
type Store struct {
	db       *badger.DB
	log      *slog.Logger
	readOnly bool

	count atomic.Int64
	bytes atomic.Int64

	locks keyLocks

	mu       sync.Mutex // guards closed and ops.Add
	closed   bool
	ops      sync.WaitGroup
	closeErr error

	stopGC chan struct{}
	gcDone chan struct{}

	// Group sync (see sync): written counts committed writes, synced the
	// writes the last finished sync covered; one caller at a time syncs
	// and the others wait for it.
	written  atomic.Uint64
	smu      sync.Mutex
	scond    *sync.Cond
	synced   atomic.Uint64 // written under smu, read without it
	syncing  bool
	syncs    atomic.Uint64 // syncs done (tests)
	syncDone chan struct{}
}

// DefaultSyncEvery is Options.SyncEvery's default.
const DefaultSyncEvery = 100 * time.Millisecond

// Open opens (creating if needed) the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	return open(dir, opts, nil)
}

// open is Open with a hook to adjust badger options (for benchmarks).
func open(dir string, opts Options, tweak func(*badger.Options)) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bopts := badgerOptions(dir, opts.ReadOnly, log)
	if tweak != nil {
		tweak(&bopts)
	}
	db, err := badger.Open(bopts)
	if err != nil {
		return nil, fmt.Errorf("blockstore: open %s: %w", dir, err)
	}
	s := &Store{
		db:       db,
		log:      log,
		readOnly: opts.ReadOnly,
		locks:    keyLocks{m: make(map[string]*keyLock)},
		stopGC:   make(chan struct{}),
		gcDone:   make(chan struct{}),
		syncDone: make(chan struct{}),
	}
	s.scond = sync.NewCond(&s.smu)
	if err := s.loadStats(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("blockstore: open %s: %w", dir, err)
	}
	if opts.ReadOnly {
		close(s.gcDone)
		close(s.syncDone)
	} else {
		go s.gcLoop(GCInterval)
		every := opts.SyncEvery
		if every <= 0 {
			every = DefaultSyncEvery
		}
		go s.syncLoop(every)
		// badger's memtable logs are appended through shared maps: without
		// this each synced write rewrites a large page-cache folio. (The
		// value log, appended with pwrite, needs no advice: 1.03x with or
		// without it, TestWriteAmplification.) See internal/mapadvise.
		if !noMapAdvise {
			if err := mapadvise.Watch(dir, mapAdviseEvery, s.stopGC); err != nil {
				log.Warn("blockstore: advising the log maps (writes may be amplified)", "err", err)
			}
		}
	}
	return s, nil
}

// mapAdviseEvery is how often newly mapped badger logs are advised.
const mapAdviseEvery = 100 * time.Millisecond

// noMapAdvise turns the map advice off (a test shows what it prevents).
var noMapAdvise = false

// keepValueCache keeps synced shards in the page cache (a test shows what
// dropping them saves). See the package doc.
var keepValueCache = false

// badgerOptions returns the tuned badger options; see the package doc.
func badgerOptions(dir string, readOnly bool, log *slog.Logger) badger.Options {
	return badger.DefaultOptions(dir).
		WithReadOnly(readOnly).
		WithLogger(badgerlog.New(log)).
		WithSyncWrites(false).
		WithDropSyncedValueCache(!keepValueCache).
		WithNumVersionsToKeep(1).
		WithValueThreshold(1 << 10).
		WithVLogPercentile(0).
		WithCompression(options.None).
		WithBlockCacheSize(0).
		WithIndexCacheSize(0).
		WithMemTableSize(16 << 20).
		WithNumMemtables(3).
		WithNumCompactors(2).
		WithValueLogFileSize(256 << 20).
		WithDetectConflicts(false).
		WithVerifyValueChecksum(true).
		WithMetricsEnabled(false)
}

// loadStats computes Count and Bytes with a scan of the index records, which
// live in the LSM tree (no value-log reads).
func (s *Store) loadStats() error {
	var count, size int64
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{nsMeta}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			var rec record
			err := item.Value(func(v []byte) error {
				var ok bool
				rec, ok = parseRecord(v)
				if !ok {
					s.log.Warn("blockstore: malformed index record", "key", fmt.Sprintf("%x", item.Key()[1:]))
				}
				return nil
			})
			if err != nil {
				return err
			}
			count++
			size += int64(rec.size)
		}
		return nil
	})
	s.count.Store(count)
	s.bytes.Store(size)
	return err
}

// gcLoop runs value-log GC every interval until stopGC is closed.
func (s *Store) gcLoop(interval time.Duration) {
	defer close(s.gcDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stopGC:
			return
		case <-t.C:
		}
		for {
			err := s.db.RunValueLogGC(gcDiscardRatio)
			if err != nil {
				if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
					s.log.Warn("blockstore: value log gc", "err", err)
				}
				break
			}
			s.log.Debug("blockstore: value log gc rewrote a file")
			select {
			case <-s.stopGC:
				return
			default:
			}
		}
	}
}

// enter registers an in-flight operation; it fails once Close has begun.
func (s *Store) enter(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	s.ops.Add(1)
	return nil
}

func (s *Store) exit() { s.ops.Done() }

// record is a decoded index record.
type record struct {
	crc  uint32
	size uint64
}

func encodeRecord(crc uint32, size int) []byte {
	b := make([]byte, recordLen)
	b[0] = formatV1
	binary.LittleEndian.PutUint32(b[1:5], crc)
	binary.LittleEndian.PutUint64(b[5:13], uint64(size))
	return b
}

func parseRecord(b []byte) (record, bool) {
	if len(b) != recordLen || b[0] != formatV1 {
		return record{}, false
	}
	return record{
		crc:  binary.LittleEndian.Uint32(b[1:5]),
		size: binary.LittleEndian.Uint64(b[5:13]),
	}, true
}

// internalKey returns ns followed by key.
func internalKey(ns byte, key []byte) []byte {
	k := make([]byte, 1+len(key))
	k[0] = ns
	copy(k[1:], key)
	return k
}

// readRecord returns the index record of key. found is false if the key is
// absent; err wraps ErrCorrupt if the record is malformed.
func readRecord(txn *badger.Txn, mkey []byte) (rec record, found bool, err error) {
	item, err := txn.Get(mkey)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, false, err
	}
	err = item.Value(func(v []byte) error {
		var ok bool
		if rec, ok = parseRecord(v); !ok {
			return fmt.Errorf("%w: malformed index record (%d bytes)", ErrCorrupt, len(v))
		}
		return nil
	})
	return rec, true, err
}

// Put stores val under key durably: when Put returns nil the value survives
// kill -9 of the process and, as far as fsync goes, a power cut. Putting an
// existing key with identical content writes nothing (it still waits for
// an earlier lazy write of it to be synced). Concurrent Puts share syncs.
// Put does not retain val.
func (s *Store) Put(ctx context.Context, key, val []byte) error {
	return s.putSynced(ctx, key, val, true)
}

// PutLazy is Put without waiting for the disk: when it returns nil the
// value is in the page cache (it survives kill -9 of the process, the
// kernel holds it) and reaches the disk within Options.SyncEvery, or at the next
// Sync. For writes whose durability comes from several peers holding them
// (a power cut of one machine loses only that machine's share), with Sync
// for fsync(2).
func (s *Store) PutLazy(ctx context.Context, key, val []byte) error {
	return s.putSynced(ctx, key, val, false)
}

// putSynced is Put (wait) or PutLazy.
func (s *Store) putSynced(ctx context.Context, key, val []byte, wait bool) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("blockstore: put %x: %w", key, err)
	}
	defer s.exit()
	err := s.put(key, val)
	if err == nil && wait {
		err = s.syncTo(s.written.Load())
	}
	if err != nil {
		return fmt.Errorf("blockstore: put %x: %w", key, err)
	}
	return nil
}

// Sync returns once every write and delete that returned before it is on
// stable storage.
func (s *Store) Sync(ctx context.Context) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("blockstore: sync: %w", err)
	}
	defer s.exit()
	if err := s.syncTo(s.written.Load()); err != nil {
		return fmt.Errorf("blockstore: sync: %w", err)
	}
	return nil
}

// syncTo returns once a sync that began after the target-th write committed
// has finished. The first caller to find none running syncs for everyone
// waiting; the others wait for it (a sync covers every write committed
// before it starts, so callers that arrive during it need the next one).
func (s *Store) syncTo(target uint64) error {
	s.smu.Lock()
	defer s.smu.Unlock()
	for s.synced.Load() < target {
		if s.syncing {
			s.scond.Wait()
			continue
		}
		s.syncing = true
		upto := s.written.Load()
		s.smu.Unlock()
		err := s.db.Sync()
		s.syncs.Add(1)
		s.smu.Lock()
		s.syncing = false
		if err == nil {
			s.synced.Store(max(s.synced.Load(), upto))
		}
		s.scond.Broadcast()
		if err != nil {
			return fmt.Errorf("sync: %w", err)
		}
	}
	return nil
}

// syncLoop syncs lazy writes every interval until stopGC is closed.
func (s *Store) syncLoop(interval time.Duration) {
	defer close(s.syncDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stopGC:
			return
		case <-t.C:
		}
		if s.synced.Load() < s.written.Load() {
			if err := s.syncTo(s.written.Load()); err != nil {
				// Lazily written values may be lost to a power cut:
				// scrub and repair find and rebuild them from the
				// other peers' shards.
				s.log.Error("blockstore: background sync failed", "err", err)
			}
		}
	}
}

func (s *Store) put(key, val []byte) error {
	if len(key) > MaxKeySize {
		return fmt.Errorf("key of %d bytes exceeds %d", len(key), MaxKeySize)
	}
	if s.readOnly {
		return errors.New("store is read-only")
	}
	crc := crc32.Checksum(val, castagnoli)
	mkey, vkey := internalKey(nsMeta, key), internalKey(nsValue, key)

	s.locks.lock(key)
	defer s.locks.unlock(key)

	// Look at the current value: identical content is a no-op; otherwise we
	// need the old size to keep Stats exact.
	var (
		old     record
		existed bool
		same    bool
	)
	err := s.view(func(txn *badger.Txn) error {
		var err error
		old, existed, err = readRecord(txn, mkey)
		if err != nil || !existed {
			return err
		}
		if old.size != uint64(len(val)) || old.crc != crc {
			return nil
		}
		// Compare the stored bytes too: a value that rotted on disk must be
		// rewritten, not trusted because its record matches. An unreadable
		// old value is simply overwritten.
		item, err := txn.Get(vkey)
		if err != nil {
			return nil
		}
		_ = item.Value(func(v []byte) error {
			same = bytes.Equal(v, val)
			return nil
		})
		return nil
	})
	if errors.Is(err, ErrCorrupt) {
		// Malformed index record: overwrite it. It was counted with size 0.
		s.log.Warn("blockstore: overwriting corrupt value", "key", fmt.Sprintf("%x", key), "err", err)
		existed, old, err = true, record{}, nil
	}
	if err != nil {
		return err
	}
	if same {
		return nil
	}

	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	if err := txn.Set(mkey, encodeRecord(crc, len(val))); err != nil {
		return err
	}
	if err := txn.Set(vkey, val); err != nil {
		return err
	}
	if err := txn.Commit(); err != nil {
		return err
	}
	s.written.Add(1)
	if existed {
		s.bytes.Add(int64(len(val)) - int64(old.size))
	} else {
		s.count.Add(1)
		s.bytes.Add(int64(len(val)))
	}
	return nil
}

// view runs fn in a read-only transaction, converting a panic inside badger
// (which corrupt on-disk data can provoke) into an ErrCorrupt error.
func (s *Store) view(fn func(txn *badger.Txn) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: panic while reading: %v", ErrCorrupt, r)
		}
	}()
	return s.db.View(fn)
}

// Get returns a copy of the value stored under key; the caller owns it. The
// stored checksum is verified on every read: a mismatch returns an error
// wrapping ErrCorrupt (and no value). A missing key returns an error wrapping
// ErrNotFound.
func (s *Store) Get(ctx context.Context, key []byte) ([]byte, error) {
	return s.GetTo(ctx, key, nil)
}

// GetTo is Get copying the value into a buffer of the caller's: buf, when
// not nil, is called once, on the caller's goroutine, with the value's
// length (from its index record, before the value is read, inside the
// read transaction: it must not block), and returns the buffer to copy
// into. When its capacity suffices the result is that
// buffer's memory, otherwise a new slice. Its old contents do not matter;
// on an error they are undefined. It lets a caller reuse buffers.
//
// The value is copied out of badger before GetTo returns, never handed out
// inside the read transaction: while it is read, badger holds its value-log
// file's read lock, and the value-log writer takes that file's write lock to
// finish it, so a caller that kept the transaction open (a slow network
// write, say) could stall every write to the store.
func (s *Store) GetTo(ctx context.Context, key []byte, buf func(n int) []byte) ([]byte, error) {
	if err := s.enter(ctx); err != nil {
		return nil, fmt.Errorf("blockstore: get %x: %w", key, err)
	}
	defer s.exit()
	val, err := s.get(key, buf)
	if err != nil {
		return nil, fmt.Errorf("blockstore: get %x: %w", key, err)
	}
	return val, nil
}

func (s *Store) get(key []byte, buf func(n int) []byte) ([]byte, error) {
	mkey, vkey := internalKey(nsMeta, key), internalKey(nsValue, key)
	var val []byte
	err := s.view(func(txn *badger.Txn) error {
		rec, found, err := readRecord(txn, mkey)
		if err != nil {
			return err
		}
		if !found {
			return ErrNotFound
		}
		item, err := txn.Get(vkey)
		if err != nil {
			// The record exists but the value does not: inconsistent store.
			return fmt.Errorf("%w: value entry: %w", ErrCorrupt, err)
		}
		var dst []byte
		if buf != nil && rec.size <= math.MaxInt32 {
			dst = buf(int(rec.size))[:0]
		}
		val, err = item.ValueCopy(dst)
		if err != nil {
			return fmt.Errorf("%w: read value: %w", ErrCorrupt, err)
		}
		if uint64(len(val)) != rec.size {
			return fmt.Errorf("%w: length %d, want %d", ErrCorrupt, len(val), rec.size)
		}
		if c := crc32.Checksum(val, castagnoli); c != rec.crc {
			return fmt.Errorf("%w: crc32c %08x, want %08x", ErrCorrupt, c, rec.crc)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if val == nil {
		val = []byte{}
	}
	return val, nil
}

// Has reports whether key is in the store. It does not read or verify the
// value.
func (s *Store) Has(ctx context.Context, key []byte) (bool, error) {
	if err := s.enter(ctx); err != nil {
		return false, fmt.Errorf("blockstore: has %x: %w", key, err)
	}
	defer s.exit()
	var found bool
	err := s.view(func(txn *badger.Txn) error {
		_, err := txn.Get(internalKey(nsMeta, key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		found = err == nil
		return err
	})
	if err != nil {
		return false, fmt.Errorf("blockstore: has %x: %w", key, err)
	}
	return found, nil
}

// Delete removes key. It reaches the disk as PutLazy's writes do: a delete
// lost to a power cut leaves a shard nobody refers to, which maint removes
// again. Deleting a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key []byte) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("blockstore: delete %x: %w", key, err)
	}
	defer s.exit()
	if err := s.delete(key); err != nil {
		return fmt.Errorf("blockstore: delete %x: %w", key, err)
	}
	return nil
}

func (s *Store) delete(key []byte) error {
	if s.readOnly {
		return errors.New("store is read-only")
	}
	mkey, vkey := internalKey(nsMeta, key), internalKey(nsValue, key)
	s.locks.lock(key)
	defer s.locks.unlock(key)

	var (
		old     record
		existed bool
	)
	err := s.view(func(txn *badger.Txn) error {
		var err error
		old, existed, err = readRecord(txn, mkey)
		return err
	})
	if errors.Is(err, ErrCorrupt) {
		existed, err = true, nil // delete it anyway; size unknown
	}
	if err != nil {
		return err
	}
	if !existed {
		return nil
	}
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	if err := txn.Delete(mkey); err != nil {
		return err
	}
	if err := txn.Delete(vkey); err != nil {
		return err
	}
	if err := txn.Commit(); err != nil {
		return err
	}
	s.written.Add(1)
	s.count.Add(-1)
	s.bytes.Add(-int64(old.size))
	return nil
}

// List calls fn for each key with the given prefix, in ascending key order,
// with the length of its value (-1 if its index record is corrupt). fn runs on the caller's goroutine; the key
// slice is valid only during the call. If fn returns an error, List stops
// and returns it. List sees a consistent snapshot taken when it starts.
func (s *Store) List(ctx context.Context, prefix []byte, fn func(key []byte, size int64) error) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("blockstore: list %x: %w", prefix, err)
	}
	defer s.exit()
	mprefix := internalKey(nsMeta, prefix)
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: mprefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			var size int64
			if err := item.Value(func(v []byte) error {
				if rec, ok := parseRecord(v); ok {
					size = int64(rec.size)
				} else {
					size = -1 // malformed index record; Get reports ErrCorrupt
				}
				return nil
			}); err != nil {
				return err
			}
			if err := fn(item.Key()[1:], size); err != nil {
				return userError{err}
			}
		}
		return nil
	})
	var ue userError
	if errors.As(err, &ue) {
		return ue.err
	}
	if err != nil {
		return fmt.Errorf("blockstore: list %x: %w", prefix, err)
	}
	return nil
}

// userError marks an error returned by a List callback so it is passed
// through unwrapped.
type userError struct{ err error }

func (e userError) Error() string { return e.err.Error() }

// Stats returns the number of values and the sum of their lengths. It is
// O(1): counters are loaded at Open and kept up to date by Put and Delete.
func (s *Store) Stats() Stats {
	// synced first: it never passes written, so the difference is >= 0.
	// No lock: this is on every shard write's path (the capacity check).
	synced := s.synced.Load()
	unsynced := int64(s.written.Load() - synced)
	return Stats{Count: s.count.Load(), Bytes: s.bytes.Load(), Unsynced: unsynced}
}

// Close stops background GC, waits for in-flight operations and closes the
// database. It is idempotent; later calls return the first call's result.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.gcDone
		return s.closeErr
	}
	s.closed = true
	s.mu.Unlock()

	close(s.stopGC)
	<-s.gcDone
	<-s.syncDone
	s.ops.Wait()
	if !s.readOnly {
		if err := s.syncTo(s.written.Load()); err != nil {
			s.log.Error("blockstore: sync at close", "err", err)
		}
	}
	if err := s.db.Close(); err != nil {
		s.closeErr = fmt.Errorf("blockstore: close: %w", err)
	}
	return s.closeErr
}

// keyLocks serialises Put and Delete on the same key, so that the
// read-old-size/write/update-counters sequence is atomic per key. Different
// keys never wait for each other, so their commits still share syncs.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

func (l *keyLocks) lock(key []byte) {
	l.mu.Lock()
	kl := l.m[string(key)]
	if kl == nil {
		kl = &keyLock{}
		l.m[string(key)] = kl
	}
	kl.refs++
	l.mu.Unlock()
	kl.mu.Lock()
}

func (l *keyLocks) unlock(key []byte) {
	l.mu.Lock()
	kl := l.m[string(key)]
	kl.refs--
	if kl.refs == 0 {
		delete(l.m, string(key))
	}
	l.mu.Unlock()
	kl.mu.Unlock()
}
