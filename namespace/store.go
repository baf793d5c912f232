package namespace

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/reefproject/reef/internal/badgerlog"
	"github.com/reefproject/reef/internal/mapadvise"
)

// Key layout in badger:
//
//	'o' tsKey            -> uvarint(seq) + sealed(op)   the op log, in Timestamp order
//	's' len(origin) origin seq(8 BE) -> tsKey           index by (Origin, Seq)
//	'g'                  -> gen(8 BE) parts(4 BE)       which checkpoint is current
//	'p' gen(8 BE) part(4 BE) -> sealed(part of checkpoint) the checkpoint, in parts
//	'i' inode(8 BE) tsKey -> sealed(inline content)     a file's inline content at a version,
//	                                                     left out of the checkpoint
//	'c'                  -> sealed(checkpoint)          a checkpoint of format 1 (read, replaced)
//	'm' "compacted"      -> per-origin highest compacted seq
//
// A checkpoint is written as parts under a new generation, with the inline
// contents it does not already have; then 'g' moves to it in one
// transaction; then the old generation's parts and the contents no longer
// referenced are deleted. A crash at any point leaves the old or the new
// checkpoint whole; loading deletes what neither references.
const (
	pfxOp      = 'o'
	pfxSeq     = 's'
	pfxPart    = 'p'
	pfxInline  = 'i'
	keyCkptGen = "g"
	keyCkpt    = "c"
	keyComp    = "mcompacted"
)

// ckptPart bounds one stored part of a checkpoint (badger refuses a value
// larger than its value log file). A variable for tests.
var ckptPart = 16 << 20

func partKey(gen uint64, part uint32) []byte {
	k := make([]byte, 13)
	k[0] = pfxPart
	binary.BigEndian.PutUint64(k[1:], gen)
	binary.BigEndian.PutUint32(k[9:], part)
	return k
}

func inlineKey(r inlineRef) []byte {
	k := make([]byte, 9, 9+len(tsKey(r.ver)))
	k[0] = pfxInline
	binary.BigEndian.PutUint64(k[1:], uint64(r.ino))
	return append(k, tsKey(r.ver)...)
}

func parseInlineKey(k []byte) (inlineRef, bool) {
	if len(k) < 9 || k[0] != pfxInline {
		return inlineRef{}, false
	}
	ts, ok := parseTSKey(k[9:])
	return inlineRef{ino: InodeID(binary.BigEndian.Uint64(k[1:9])), ver: ts}, ok
}

// tsKey encodes a Timestamp so that byte order is Timestamp order.
func tsKey(t Timestamp) []byte {
	b := make([]byte, 0, 13+len(t.Peer))
	b = binary.BigEndian.AppendUint64(b, uint64(t.Wall)^(1<<63))
	b = binary.BigEndian.AppendUint32(b, t.Logical)
	return append(b, t.Peer...)
}

func parseTSKey(b []byte) (Timestamp, bool) {
	if len(b) < 12 {
		return Timestamp{}, false
	}
	return Timestamp{Wall: int64(binary.BigEndian.Uint64(b) ^ (1 << 63)), Logical: binary.BigEndian.Uint32(b[8:]), Peer: string(b[12:])}, true
}

func seqKey(origin string, seq uint64) []byte {
	b := []byte{pfxSeq, byte(len(origin))}
	b = append(b, origin...)
	return binary.BigEndian.AppendUint64(b, seq)
}

func opKey(t Timestamp) []byte { return append([]byte{pfxOp}, tsKey(t)...) }

// store wraps badger; badger types stay inside it.
type store struct {
	db    *badger.DB
	log   *slog.Logger
	seal  func([]byte) ([]byte, error)
	open  func([]byte) ([]byte, error)
	stop  chan struct{} // closed by close: ends the map advisor, the GC and the flusher
	done  chan struct{} // closed when the GC has ended
	ops   *opLog        // this peer's own ops on their way to badger (oplog.go)
	kick  chan struct{} // wakes the flusher early
	fdone chan struct{} // closed when the flusher has ended
}

// flushEvery is how long this peer's own ops may wait in the op log
// before they are put into badger.
const flushEvery = 50 * time.Millisecond

// valueThreshold: values from this size (ops carrying a small file's
// content, inline contents kept apart) go to badger's value log, written
// once, instead of the LSM tree, whose compactions would copy them again
// and again (they took a quarter of a receiving peer's CPU while a tree
// was untarred). The value log's garbage (compacted ops, replaced
// contents) is collected by gcLoop.
const valueThreshold = 512

// gcEvery is how often the value log's garbage is looked for.
const gcEvery = time.Minute

func openStore(dir string, log *slog.Logger, seal, open func([]byte) ([]byte, error), lazy bool) (*store, error) {
	opts := badger.DefaultOptions(dir).
		WithLogger(badgerlog.New(log)).
		WithSyncWrites(!lazy).
		WithNumVersionsToKeep(1).
		WithCompression(options.None).
		WithBlockCacheSize(0).
		WithIndexCacheSize(0).
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		WithNumCompactors(2).
		WithValueLogFileSize(64 << 20).
		WithValueThreshold(valueThreshold).
		WithDetectConflicts(false).
		WithMetricsEnabled(false)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("namespace: open %s: %w", dir, err)
	}
	if seal == nil {
		seal = func(b []byte) ([]byte, error) { return b, nil }
	}
	if open == nil {
		// A copy, as Config.Open's result must be: encodedFrom keeps
		// what it opens from a badger value valid only until it returns.
		open = func(b []byte) ([]byte, error) { return bytes.Clone(b), nil }
	}
	st := &store{db: db, log: log, seal: seal, open: open, stop: make(chan struct{}), done: make(chan struct{}),
		kick: make(chan struct{}, 1), fdone: make(chan struct{})}
	if st.ops, err = openLog(filepath.Join(dir, "reef-ops.log"), seal, open, !lazy, st.putOps); err != nil {
		db.Close()
		return nil, err
	}
	go st.gcLoop()
	go st.flusher()
	// Each commit would otherwise rewrite a large page-cache folio of the
	// memtable log; see internal/mapadvise.
	if err := mapadvise.Watch(dir, 100*time.Millisecond, st.stop); err != nil {
		log.Warn("namespace: advising the log maps (writes may be amplified)", "err", err)
	}
	return st, nil
}

func (s *store) close() error {
	close(s.stop)
	<-s.done
	<-s.fdone
	err := s.flush()
	if cerr := s.ops.close(); err == nil {
		err = cerr
	}
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// appendOps durably writes this peer's own new ops (to the op log). With
// keep, it returns each op's encoding (encodeOp), which the caller may keep.
func (s *store) appendOps(ops []Op, keep bool) ([][]byte, error) {
	parts, full, err := s.ops.append(ops, keep)
	if full {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	return parts, err
}

// flush puts the op log's ops into badger. Everything that reads ops from
// badger calls it first.
func (s *store) flush() error { return s.ops.flush(s.putOps) }

// flusher flushes the op log every flushEvery, or when kicked, until close.
func (s *store) flusher() {
	defer close(s.fdone)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-s.kick:
		}
		if err := s.flush(); err != nil {
			s.log.Warn("namespace: moving ops from the op log to the store", "err", err)
		}
	}
}

// gcLoop rewrites value log files that are mostly garbage, until close.
func (s *store) gcLoop() {
	defer close(s.done)
	t := time.NewTicker(gcEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		for {
			err := s.db.RunValueLogGC(0.5)
			if err != nil {
				if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
					s.log.Warn("namespace: value log gc", "err", err)
				}
				break
			}
			select {
			case <-s.stop:
				return
			default:
			}
		}
	}
}

// sync flushes written ops to stable storage.
func (s *store) sync() error {
	if err := s.flush(); err != nil {
		return err
	}
	return s.db.Sync()
}

// putOps durably writes ops (synced before returning).
func (s *store) putOps(ops []Op) error {
	_, err := s.putOpsEnc(ops, false)
	return err
}

// putOpsEnc is putOps; with keep, it returns each op's encoding (encodeOp),
// which the caller may keep.
func (s *store) putOpsEnc(ops []Op, keep bool) ([][]byte, error) {
	var encs [][]byte
	if keep {
		encs = make([][]byte, len(ops))
	}
	// A transaction for the usual handful of ops: a WriteBatch costs
	// more set-up than the write itself (BenchmarkCreateLazy).
	if len(ops) <= smallBatch {
		err := s.db.Update(func(txn *badger.Txn) error {
			return s.setOps(ops, encs, txn.Set)
		})
		return encs, err
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	if err := s.setOps(ops, encs, wb.Set); err != nil {
		return nil, err
	}
	if err := wb.Flush(); err != nil {
		return nil, fmt.Errorf("namespace: write ops: %w", err)
	}
	return encs, nil
}

// smallBatch is the most ops putOps writes in one transaction.
const smallBatch = 64

// setOps encodes ops and hands their records to set; when encs is not
// nil, encs[i] is set to a copy of ops[i]'s encoding.
func (s *store) setOps(ops []Op, encs [][]byte, set func(k, v []byte) error) error {
	// One encoder for all, sized for the largest op: each op's encoder
	// grew by doubling from empty before.
	e := &encoder{}
	for i := range ops {
		op := &ops[i]
		if n := opSize(op); cap(e.b) < n {
			e.b = make([]byte, 0, n)
		}
		e.b = e.b[:0]
		encodeOp(e, op)
		sealed, err := s.seal(e.b)
		if err != nil {
			return fmt.Errorf("namespace: seal op: %w", err)
		}
		if encs != nil {
			encs[i] = bytes.Clone(e.b)
		}
		v := make([]byte, 0, binary.MaxVarintLen64+len(sealed))
		v = binary.AppendUvarint(v, op.Seq)
		v = append(v, sealed...)
		k := opKey(op.TS)
		if err := set(k, v); err != nil {
			return fmt.Errorf("namespace: write op: %w", err)
		}
		if err := set(seqKey(op.Origin, op.Seq), k[1:]); err != nil {
			return fmt.Errorf("namespace: write op: %w", err)
		}
	}
	return nil
}

func (s *store) decodeStored(v []byte) (Op, error) {
	_, n := binary.Uvarint(v)
	if n <= 0 {
		return Op{}, fmt.Errorf("namespace: stored op: %w", ErrCorrupt)
	}
	plain, err := s.open(v[n:])
	if err != nil {
		return Op{}, fmt.Errorf("namespace: open op: %w", err)
	}
	d := &decoder{b: plain}
	op := decodeOp(d)
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return Op{}, d.err
	}
	return op, nil
}

// scanOps calls fn, in Timestamp order, for every stored op for which
// skip(ts, seq) is false.
func (s *store) scanOps(skip func(ts Timestamp, seq uint64) bool, fn func(Op) error) error {
	if err := s.flush(); err != nil {
		return err
	}
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pfxOp}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			ts, ok := parseTSKey(item.Key()[1:])
			if !ok {
				return fmt.Errorf("namespace: op key %x: %w", item.Key(), ErrCorrupt)
			}
			var seq uint64
			if err := item.Value(func(v []byte) error {
				seq, _ = binary.Uvarint(v)
				return nil
			}); err != nil {
				return err
			}
			if skip != nil && skip(ts, seq) {
				continue
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			op, err := s.decodeStored(v)
			if err != nil {
				return err
			}
			if err := fn(op); err != nil {
				return err
			}
		}
		return nil
	})
}

// scanSeqs calls fn for every (origin, seq) in the index.
func (s *store) scanSeqs(fn func(origin string, seq uint64)) error {
	if err := s.flush(); err != nil {
		return err
	}
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pfxSeq}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) < 2 || len(k) != 2+int(k[1])+8 {
				continue
			}
			fn(string(k[2:2+int(k[1])]), binary.BigEndian.Uint64(k[len(k)-8:]))
		}
		return nil
	})
}

// opsFrom returns the stored ops of origin with seq > from, in seq order, at
// most max of them.
func (s *store) opsFrom(origin string, from uint64, max int) ([]Op, bool, error) {
	if err := s.flush(); err != nil {
		return nil, false, err
	}
	var ops []Op
	more := false
	err := s.db.View(func(txn *badger.Txn) error {
		pfx := seqKey(origin, 0)[:2+len(origin)]
		it := txn.NewIterator(badger.IteratorOptions{Prefix: pfx})
		defer it.Close()
		for it.Seek(seqKey(origin, from+1)); it.Valid(); it.Next() {
			if len(ops) >= max {
				more = true
				return nil
			}
			tk, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			item, err := txn.Get(append([]byte{pfxOp}, tk...))
			if err != nil {
				return err
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			op, err := s.decodeStored(v)
			if err != nil {
				return err
			}
			ops = append(ops, op)
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("namespace: read ops of %s: %w", origin, err)
	}
	return ops, more, nil
}

// encodedFrom is opsFrom for an answer on the wire: it appends to dst the
// encodings (encodeOp) of the stored ops of origin with seq > from, in seq
// order, at most max of them. Each is the stored record opened, checked by
// decoding it as opsFrom would (an op that does not decode fails the call
// as it fails opsFrom), but neither copied out of badger first nor encoded
// again.
func (s *store) encodedFrom(origin string, from uint64, max int, dst [][]byte) ([][]byte, bool, error) {
	if err := s.flush(); err != nil {
		return dst, false, err
	}
	more := false
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		pfx := seqKey(origin, 0)[:2+len(origin)]
		it := txn.NewIterator(badger.IteratorOptions{Prefix: pfx})
		defer it.Close()
		// The ops are found by walking the op log beside the index
		// rather than by a txn.Get each (a descent through every level,
		// decoding a block each time: two thirds of the time): one
		// origin's ops follow each other in timestamp order, with other
		// origins' in between.
		ops := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pfxOp}})
		defer ops.Close()
		key := []byte{pfxOp}
		for it.Seek(seqKey(origin, from+1)); it.Valid(); it.Next() {
			if n >= max {
				more = true
				return nil
			}
			if err := it.Item().Value(func(tk []byte) error {
				key = append(key[:1], tk...)
				return nil
			}); err != nil {
				return err
			}
			seekOp(ops, key)
			if !ops.Valid() || !bytes.Equal(ops.Item().Key(), key) {
				return fmt.Errorf("op %x: %w", key, badger.ErrKeyNotFound)
			}
			var plain []byte
			if err := ops.Item().Value(func(v []byte) error {
				var err error
				plain, err = s.openStored(v)
				return err
			}); err != nil {
				return err
			}
			dst = append(dst, plain)
			n++
		}
		return nil
	})
	if err != nil {
		return dst, false, fmt.Errorf("namespace: read ops of %s: %w", origin, err)
	}
	return dst, more, nil
}

// seekOp moves it to key, or to the first key after it: by a few steps
// forward when key is just ahead, else by a seek.
func seekOp(it *badger.Iterator, key []byte) {
	for range 16 {
		if !it.Valid() {
			break
		}
		switch c := bytes.Compare(it.Item().Key(), key); {
		case c == 0:
			return
		case c > 0:
			it.Seek(key) // behind us (seqs out of timestamp order)
			return
		}
		it.Next()
	}
	it.Seek(key)
}

// openStored opens a stored op record (uvarint(seq) + sealed encoding) and
// checks that it decodes to one op. The result is a new slice (Open's).
func (s *store) openStored(v []byte) ([]byte, error) {
	_, n := binary.Uvarint(v)
	if n <= 0 {
		return nil, fmt.Errorf("namespace: stored op: %w", ErrCorrupt)
	}
	plain, err := s.open(v[n:])
	if err != nil {
		return nil, fmt.Errorf("namespace: open op: %w", err)
	}
	// view: the check needs no copy of the content.
	d := &decoder{b: plain, view: true}
	decodeOp(d)
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	return plain, nil
}

func (s *store) get(key string) ([]byte, error) {
	var v []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(key))
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	return v, err
}

// putCheckpoint writes a checkpoint: plain (format 2), the inline contents
// in add that it references and the store lacks; it then deletes the
// previous checkpoint and the contents in drop. See the key layout.
func (s *store) putCheckpoint(plain []byte, add map[inlineRef][]byte, drop []inlineRef) error {
	oldGen, oldParts, err := s.ckptGen()
	if err != nil {
		return err
	}
	gen := oldGen + 1
	parts := uint32((len(plain) + ckptPart - 1) / ckptPart)
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for r, b := range add {
		sealed, err := s.seal(b)
		if err != nil {
			return fmt.Errorf("namespace: seal inline content: %w", err)
		}
		if err := wb.Set(inlineKey(r), sealed); err != nil {
			return fmt.Errorf("namespace: write inline content: %w", err)
		}
	}
	for i := uint32(0); i < parts; i++ {
		sealed, err := s.seal(plain[int(i)*ckptPart : min(len(plain), int(i+1)*ckptPart)])
		if err != nil {
			return fmt.Errorf("namespace: seal checkpoint: %w", err)
		}
		if err := wb.Set(partKey(gen, i), sealed); err != nil {
			return fmt.Errorf("namespace: write checkpoint: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("namespace: write checkpoint: %w", err)
	}
	err = s.db.Update(func(txn *badger.Txn) error {
		v := binary.BigEndian.AppendUint64(nil, gen)
		v = binary.BigEndian.AppendUint32(v, parts)
		if err := txn.Set([]byte(keyCkptGen), v); err != nil {
			return err
		}
		return txn.Delete([]byte(keyCkpt))
	})
	if err != nil {
		return fmt.Errorf("namespace: write checkpoint: %w", err)
	}
	// The new checkpoint is in place: what only the old one used goes.
	var dead [][]byte
	for i := uint32(0); oldGen > 0 && i < oldParts; i++ {
		dead = append(dead, partKey(oldGen, i))
	}
	for _, r := range drop {
		dead = append(dead, inlineKey(r))
	}
	return s.deleteKeys(dead)
}

func (s *store) deleteKeys(keys [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return fmt.Errorf("namespace: delete old checkpoint data: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("namespace: delete old checkpoint data: %w", err)
	}
	return nil
}

// ckptGen reads which checkpoint generation is current (0: none).
func (s *store) ckptGen() (gen uint64, parts uint32, err error) {
	v, err := s.get(keyCkptGen)
	if err != nil {
		return 0, 0, fmt.Errorf("namespace: read checkpoint: %w", err)
	}
	if v == nil {
		return 0, 0, nil
	}
	if len(v) != 12 {
		return 0, 0, fmt.Errorf("namespace: checkpoint record of %d bytes: %w", len(v), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v), binary.BigEndian.Uint32(v[8:]), nil
}

// loadCheckpoint reads the current checkpoint (nil if none) and deletes
// checkpoint data that it does not reference (left by a crash).
func (s *store) loadCheckpoint() (*checkpoint, error) {
	gen, parts, err := s.ckptGen()
	if err != nil {
		return nil, err
	}
	var plain []byte
	if gen == 0 {
		v, err := s.get(keyCkpt)
		if err != nil {
			return nil, fmt.Errorf("namespace: read checkpoint: %w", err)
		}
		if v == nil {
			return nil, s.sweep(0, nil)
		}
		if plain, err = s.open(v); err != nil {
			return nil, fmt.Errorf("namespace: open checkpoint: %w", err)
		}
	}
	for i := uint32(0); i < parts; i++ {
		v, err := s.get(string(partKey(gen, i)))
		if err != nil {
			return nil, fmt.Errorf("namespace: read checkpoint part %d: %w", i, err)
		}
		if v == nil {
			return nil, fmt.Errorf("namespace: checkpoint %d lacks part %d of %d: %w", gen, i, parts, ErrCorrupt)
		}
		p, err := s.open(v)
		if err != nil {
			return nil, fmt.Errorf("namespace: open checkpoint part %d: %w", i, err)
		}
		plain = append(plain, p...)
	}
	c, err := decodeCheckpoint(plain, s.inline)
	if err != nil {
		return nil, err
	}
	return c, s.sweep(gen, c.refs)
}

// inline reads one inline content stored apart.
func (s *store) inline(r inlineRef) ([]byte, error) {
	v, err := s.get(string(inlineKey(r)))
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, fmt.Errorf("inline content of inode %d missing: %w", r.ino, ErrCorrupt)
	}
	return s.open(v)
}

// sweep deletes checkpoint parts of other generations than gen and inline
// contents not in refs.
func (s *store) sweep(gen uint64, refs map[inlineRef]bool) error {
	var dead [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		for _, pfx := range []byte{pfxPart, pfxInline} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pfx}})
			for it.Rewind(); it.Valid(); it.Next() {
				k := it.Item().Key()
				switch pfx {
				case pfxPart:
					if len(k) != 13 || binary.BigEndian.Uint64(k[1:9]) != gen {
						dead = append(dead, bytes.Clone(k))
					}
				case pfxInline:
					if r, ok := parseInlineKey(k); !ok || !refs[r] {
						dead = append(dead, bytes.Clone(k))
					}
				}
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("namespace: sweep checkpoint data: %w", err)
	}
	return s.deleteKeys(dead)
}

func encodeVV(vv map[string]uint64) []byte {
	e := &encoder{}
	e.uv(uint64(len(vv)))
	for o, s := range vv {
		e.str(o)
		e.uv(s)
	}
	return e.b
}

func decodeVV(b []byte) (map[string]uint64, error) {
	vv := map[string]uint64{}
	if len(b) == 0 {
		return vv, nil
	}
	d := &decoder{b: b}
	for i, n := 0, d.count(1<<20, 2); i < n && d.err == nil; i++ {
		vv[d.str(MaxPeerLen)] = d.uv()
	}
	return vv, d.err
}

func (s *store) loadCompacted() (map[string]uint64, error) {
	v, err := s.get(keyComp)
	if err != nil {
		return nil, fmt.Errorf("namespace: read compaction record: %w", err)
	}
	return decodeVV(v)
}

// compact deletes stored ops with TS <= upTo, updating compacted. It returns
// the number of ops deleted.
func (s *store) compact(upTo Timestamp, compacted map[string]uint64) (int, error) {
	// Ops waiting in the op log must not land in badger after the cut.
	if err := s.flush(); err != nil {
		return 0, err
	}
	type victim struct {
		key    []byte
		origin string
		seq    uint64
	}
	var vs []victim
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pfxOp}})
		defer it.Close()
		end := opKey(upTo)
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			if bytes.Compare(item.Key(), end) > 0 {
				break
			}
			ts, ok := parseTSKey(item.Key()[1:])
			if !ok {
				continue
			}
			var seq uint64
			if err := item.Value(func(v []byte) error {
				seq, _ = binary.Uvarint(v)
				return nil
			}); err != nil {
				return err
			}
			vs = append(vs, victim{item.KeyCopy(nil), ts.Peer, seq})
		}
		return nil
	})
	if err != nil || len(vs) == 0 {
		return 0, err
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, v := range vs {
		if err := wb.Delete(v.key); err != nil {
			return 0, err
		}
		if err := wb.Delete(seqKey(v.origin, v.seq)); err != nil {
			return 0, err
		}
		compacted[v.origin] = max(compacted[v.origin], v.seq)
	}
	if err := wb.Set([]byte(keyComp), encodeVV(compacted)); err != nil {
		return 0, err
	}
	if err := wb.Flush(); err != nil {
		return 0, fmt.Errorf("namespace: compact: %w", err)
	}
	return len(vs), nil
}

// countOps counts the stored ops (keys only).
func (s *store) countOps() (int64, error) {
	if err := s.flush(); err != nil {
		return 0, err
	}
	var n int64
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pfxOp}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	return n, err
}

// reset deletes everything.
func (s *store) reset() error {
	if err := s.flush(); err != nil {
		return err
	}
	if err := s.db.DropAll(); err != nil {
		return fmt.Errorf("namespace: drop: %w", err)
	}
	return nil
}

func (s *store) putCompacted(vv map[string]uint64) error {
	err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(keyComp), encodeVV(vv))
	})
	if err != nil {
		return fmt.Errorf("namespace: write compaction record: %w", err)
	}
	return nil
}
