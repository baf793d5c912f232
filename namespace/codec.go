package namespace

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
)

// Wire and disk formats. Everything is length-prefixed and bounded; decoders
// return ErrCorrupt (wrapped) on bad input and never panic.
const (
	opsFormat   = 1
	stateFormat = 2 // 1: before inline content could be stored apart (still read)
	// MaxOpsPerBatch bounds the number of ops in one encoded batch.
	MaxOpsPerBatch = 1 << 16
)

type encoder struct{ b []byte }

func (e *encoder) u8(v uint8)     { e.b = append(e.b, v) }
func (e *encoder) uv(v uint64)    { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) iv(v int64)     { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) bytes(v []byte) { e.uv(uint64(len(v))); e.b = append(e.b, v...) }
func (e *encoder) str(v string)   { e.uv(uint64(len(v))); e.b = append(e.b, v...) }
func (e *encoder) ts(t Timestamp) {
	e.iv(t.Wall)
	e.uv(uint64(t.Logical))
	e.str(t.Peer)
}

type decoder struct {
	b   []byte
	err error
	// view makes bytes return slices of b instead of copies: for checking
	// an encoding that is kept as it is (store.encodedFrom), where copying
	// every inline content only to drop it was the cost.
	view bool
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("namespace: decode %s: %w", what, ErrCorrupt)
	}
}

func (d *decoder) u8() uint8 {
	if d.err != nil || len(d.b) < 1 {
		d.fail("byte")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uv() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) iv() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) u32() uint32 {
	v := d.uv()
	if v > 1<<32-1 {
		d.fail("uint32")
	}
	return uint32(v)
}

func (d *decoder) bytes(max int) []byte {
	n := d.uv()
	if d.err != nil {
		return nil
	}
	if n > uint64(max) || n > uint64(len(d.b)) {
		d.fail("length")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	if n == 0 {
		return nil
	}
	if d.view {
		return v
	}
	return slices.Clone(v)
}

func (d *decoder) str(max int) string { return string(d.bytes(max)) }

func (d *decoder) ts() Timestamp {
	return Timestamp{Wall: d.iv(), Logical: d.u32(), Peer: d.str(MaxPeerLen)}
}

// count reads an element count, bounded by max and by the bytes left
// (each element takes at least minSize bytes).
func (d *decoder) count(max, minSize int) int {
	n := d.uv()
	if d.err != nil {
		return 0
	}
	if n > uint64(max) || n*uint64(minSize) > uint64(len(d.b)) {
		d.fail("count")
		return 0
	}
	return int(n)
}

func encodeOp(e *encoder, op *Op) {
	e.u8(uint8(op.Kind))
	e.ts(op.TS)
	e.uv(op.Seq)
	switch op.Kind {
	case OpMove:
		e.uv(uint64(op.Node))
		e.uv(uint64(op.NewParent))
		e.str(op.Name)
		e.uv(uint64(op.Inode))
		e.ts(op.Base)
		if op.Init == nil {
			e.u8(0)
		} else {
			i := op.Init
			e.u8(1)
			e.u8(uint8(i.Type))
			e.uv(uint64(i.Mode))
			e.uv(uint64(i.Uid))
			e.uv(uint64(i.Gid))
			e.iv(i.Atime)
			e.iv(i.Mtime)
			e.iv(i.Ctime)
			e.str(i.Target)
		}
	case OpSetAttr:
		e.uv(uint64(op.Inode))
		a := op.Attr
		e.uv(uint64(a.Mask))
		e.uv(uint64(a.Mode))
		e.uv(uint64(a.Uid))
		e.uv(uint64(a.Gid))
		e.iv(a.Atime)
		e.iv(a.Mtime)
	case OpSetContent:
		e.uv(uint64(op.Inode))
		encodeContent(e, op.Content)
		e.ts(op.Base)
	case OpSetXattr, OpRemoveXattr:
		e.uv(uint64(op.Inode))
		e.str(op.Name)
		if op.Kind == OpSetXattr {
			e.bytes(op.Value)
		}
	}
}

// encodeContent writes manifest(32) | size | bytes. The bytes are the data
// of an inline file (zero manifest); for a chunked file they are its
// extension: empty, or Zero as a uvarint. Records from before Zero have
// them empty, so they still read.
func encodeContent(e *encoder, c Content) {
	e.b = append(e.b, c.Manifest[:]...)
	e.iv(c.Size)
	if c.Manifest != ([32]byte{}) {
		if c.Zero > 0 {
			e.uv(uint64(uvarintLen(uint64(c.Zero))))
			e.uv(uint64(c.Zero))
		} else {
			e.uv(0)
		}
		return
	}
	e.bytes(c.Inline)
}

func decodeContent(d *decoder) Content {
	var c Content
	if d.err == nil && len(d.b) < 32 {
		d.fail("manifest")
	}
	if d.err != nil {
		return c
	}
	copy(c.Manifest[:], d.b[:32])
	d.b = d.b[32:]
	c.Size = d.iv()
	if c.Manifest == ([32]byte{}) {
		c.Inline = d.bytes(MaxInlineLen)
		return c
	}
	ext := d.bytes(binary.MaxVarintLen64)
	if len(ext) > 0 {
		z, n := binary.Uvarint(ext)
		if n != len(ext) || z > uint64(max(c.Size, 0)) {
			d.fail("content's zero bytes")
			return c
		}
		c.Zero = int64(z)
	}
	return c
}

func decodeOp(d *decoder) Op {
	var op Op
	op.Kind = OpKind(d.u8())
	op.TS = d.ts()
	op.Origin = op.TS.Peer
	op.Seq = d.uv()
	switch op.Kind {
	case OpMove:
		op.Node = NodeID(d.uv())
		op.NewParent = NodeID(d.uv())
		op.Name = d.str(MaxNameLen)
		op.Inode = InodeID(d.uv())
		op.Base = d.ts()
		if d.u8() == 1 {
			op.Init = &InodeInit{Type: Type(d.u8()), Mode: d.u32(), Uid: d.u32(), Gid: d.u32(),
				Atime: d.iv(), Mtime: d.iv(), Ctime: d.iv(), Target: d.str(MaxTargetLen)}
		}
	case OpSetAttr:
		op.Inode = InodeID(d.uv())
		op.Attr = AttrChange{Mask: AttrMask(d.u32()), Mode: d.u32(), Uid: d.u32(), Gid: d.u32(), Atime: d.iv(), Mtime: d.iv()}
	case OpSetContent:
		op.Inode = InodeID(d.uv())
		op.Content = decodeContent(d)
		op.Base = d.ts()
	case OpSetXattr, OpRemoveXattr:
		op.Inode = InodeID(d.uv())
		op.Name = d.str(MaxNameLen)
		if op.Kind == OpSetXattr {
			op.Value = d.bytes(MaxXattrValueLen)
		}
	default:
		d.fail("op kind")
	}
	return op
}

// opSize bounds the length of op's encoding (encodeOp), so that encoders
// are sized once: growing by doubling from empty cost a sync answer of
// small files' contents a third of its encoding time. Per field: a
// timestamp takes at most 17 bytes and its peer, an ID or a time 10, a
// mode, uid, gid or mask 5, a length 3.
func opSize(op *Op) int {
	n := 1 + 17 + len(op.TS.Peer) + 10 // kind, TS, seq
	switch op.Kind {
	case OpMove:
		n += 10 + 10 + 3 + len(op.Name) + 10 + 17 + len(op.Base.Peer) + 1
		if op.Init != nil {
			n += 1 + 3*5 + 3*10 + 3 + len(op.Init.Target)
		}
	case OpSetAttr:
		n += 10 + 4*5 + 2*10
	case OpSetContent:
		n += 10 + 32 + 10 + 3 + len(op.Content.Inline) + 10 + 17 + len(op.Base.Peer)
	case OpSetXattr, OpRemoveXattr:
		n += 10 + 3 + len(op.Name) + 3 + len(op.Value)
	}
	return n
}

// EncodeOps encodes ops in the plain wire format (not sealed; see
// Namespace.EncodeOps for the sealed form).
func EncodeOps(ops []Op) ([]byte, error) {
	b, _, err := encodeOps(ops, false)
	return b, err
}

// encodeOps is EncodeOps; with parts, it also returns each op's encoding
// (encodeOp) as a slice of the batch's (for the sync cache: the op log
// encodes a commit's ops anyway).
func encodeOps(ops []Op, parts bool) ([]byte, [][]byte, error) {
	if len(ops) > MaxOpsPerBatch {
		return nil, nil, fmt.Errorf("namespace: encode %d ops: %w", len(ops), ErrInvalid)
	}
	n := 1 + binary.MaxVarintLen64
	for i := range ops {
		n += opSize(&ops[i])
	}
	e := &encoder{b: make([]byte, 0, n)}
	e.u8(opsFormat)
	e.uv(uint64(len(ops)))
	var ends []int
	if parts {
		ends = make([]int, len(ops)+1)
		ends[0] = len(e.b)
	}
	for i := range ops {
		encodeOp(e, &ops[i])
		if parts {
			ends[i+1] = len(e.b)
		}
	}
	if !parts {
		return e.b, nil, nil
	}
	// The parts outlive the batch in the cache: keep no more than they
	// hold (opSize may overestimate small ops twice over).
	b := slices.Clone(e.b)
	ps := make([][]byte, len(ops))
	for i := range ps {
		ps[i] = b[ends[i]:ends[i+1]:ends[i+1]]
	}
	return b, ps, nil
}

// appendBatch appends the plain wire format of the ops whose encodings
// (encodeOp) are parts: what EncodeOps returns for those ops.
func appendBatch(dst []byte, parts [][]byte) []byte {
	dst = append(dst, opsFormat)
	dst = binary.AppendUvarint(dst, uint64(len(parts)))
	for _, p := range parts {
		dst = append(dst, p...)
	}
	return dst
}

// batchSize is the length of appendBatch's output for parts.
func batchSize(parts [][]byte) int {
	n := 1 + uvarintLen(uint64(len(parts)))
	for _, p := range parts {
		n += len(p)
	}
	return n
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// DecodeOps decodes the plain wire format. Bad input returns an error
// wrapping ErrCorrupt; it never panics. The ops are not validated beyond
// their sizes (ApplyRemote validates them).
func DecodeOps(b []byte) ([]Op, error) {
	d := &decoder{b: b}
	if d.u8() != opsFormat {
		d.fail("ops format")
	}
	n := d.count(MaxOpsPerBatch, 4)
	ops := make([]Op, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		ops = append(ops, decodeOp(d))
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	return ops, nil
}

// validateOp checks a remote op's shape (not its effect).
func validateOp(op *Op) error {
	bad := func(why string) error {
		return fmt.Errorf("namespace: op %s/%d: %s: %w", op.Origin, op.Seq, why, ErrInvalid)
	}
	if op.Origin == "" || op.Origin != op.TS.Peer || len(op.Origin) > MaxPeerLen {
		return bad("origin")
	}
	if op.Seq == 0 {
		return bad("seq")
	}
	switch op.Kind {
	case OpMove:
		if err := checkName(op.Name); err != nil {
			return bad("name")
		}
		if op.Init != nil && len(op.Init.Target) > MaxTargetLen {
			return bad("target")
		}
	case OpSetAttr, OpSetContent, OpRemoveXattr:
		if op.Kind == OpSetContent && len(op.Content.Inline) > MaxInlineLen {
			return bad("inline")
		}
	case OpSetXattr:
		if op.Name == "" || len(op.Name) > MaxNameLen || len(op.Value) > MaxXattrValueLen {
			return bad("xattr")
		}
	default:
		return bad("kind")
	}
	return nil
}

// checkpoint is the persisted/transferred state at a base Timestamp.
type checkpoint struct {
	base   Timestamp
	baseVV map[string]uint64 // per origin: ops with TS <= base are seqs 1..baseVV
	st     *state
	ops    []Op // Snapshot only: ops newer than base

	// apart, when set at encoding, picks the inodes whose inline content
	// is left out of the encoding (stored under its own key, see
	// store.putCheckpoint): a checkpoint then costs the metadata, not every
	// small file's bytes again. At decoding, inline content left out is
	// read with fetch; refs lists it.
	apart func(in *Inode) bool
	fetch func(ref inlineRef) ([]byte, error)
	refs  map[inlineRef]bool
}

// inlineRef names one version of one inode's inline content.
type inlineRef struct {
	ino InodeID
	ver Timestamp
}

// Content encodings inside a checkpoint (format 2).
const (
	contentHere  = 0 // the inline bytes follow
	contentApart = 1 // stored under inlineKey(ino, version)
)

func encodeCheckpoint(c *checkpoint) []byte {
	e := &encoder{}
	e.u8(stateFormat)
	e.ts(c.base)
	origins := slices.Sorted(maps.Keys(c.baseVV))
	e.uv(uint64(len(origins)))
	for _, o := range origins {
		e.str(o)
		e.uv(c.baseVV[o])
	}
	ids := slices.Sorted(maps.Keys(c.st.inodes))
	e.uv(uint64(len(ids)))
	for _, id := range ids {
		in := c.st.inodes[id]
		e.uv(uint64(id))
		e.u8(uint8(in.Type))
		e.uv(uint64(in.Mode))
		e.uv(uint64(in.Uid))
		e.uv(uint64(in.Gid))
		e.iv(in.Size)
		e.iv(in.Atime)
		e.iv(in.Mtime)
		e.iv(in.Ctime)
		e.str(in.Target)
		names := slices.Sorted(maps.Keys(in.Xattrs))
		e.uv(uint64(len(names)))
		for _, n := range names {
			e.str(n)
			e.bytes(in.Xattrs[n])
		}
		e.ts(in.Version)
		if len(in.Content.Inline) > 0 && c.apart != nil && c.apart(in) {
			encodeContent(e, Content{Manifest: in.Content.Manifest, Size: in.Content.Size, Zero: in.Content.Zero})
			e.u8(contentApart)
		} else {
			encodeContent(e, in.Content)
			e.u8(contentHere)
		}
	}
	nids := slices.Sorted(maps.Keys(c.st.nodes))
	e.uv(uint64(len(nids)))
	for _, id := range nids {
		n := c.st.nodes[id]
		e.uv(uint64(id))
		e.uv(uint64(n.parent))
		e.str(n.name)
		e.uv(uint64(n.inode))
		e.ts(n.nameTS)
		e.uv(uint64(n.oldParent))
		e.str(n.oldName)
		e.ts(n.delTS)
	}
	e.uv(uint64(len(c.ops)))
	for i := range c.ops {
		encodeOp(e, &c.ops[i])
	}
	return e.b
}

// decodeCheckpoint decodes a checkpoint or snapshot; fetch reads inline
// content stored apart (nil: there must be none, as in a snapshot).
func decodeCheckpoint(b []byte, fetch func(inlineRef) ([]byte, error)) (*checkpoint, error) {
	const maxItems = 1 << 31
	d := &decoder{b: b}
	format := d.u8()
	if format != stateFormat && format != 1 {
		d.fail("state format")
	}
	c := &checkpoint{base: d.ts(), baseVV: map[string]uint64{}, st: newState(), fetch: fetch}
	for i, n := 0, d.count(maxItems, 2); i < n && d.err == nil; i++ {
		c.baseVV[d.str(MaxPeerLen)] = d.uv()
	}
	for i, n := 0, d.count(maxItems, 40); i < n && d.err == nil; i++ {
		in := &Inode{ID: InodeID(d.uv()), Type: Type(d.u8()), Mode: d.u32(), Uid: d.u32(), Gid: d.u32(),
			Size: d.iv(), Atime: d.iv(), Mtime: d.iv(), Ctime: d.iv(), Target: d.str(MaxTargetLen)}
		for j, m := 0, d.count(MaxXattrs, 2); j < m && d.err == nil; j++ {
			if in.Xattrs == nil {
				in.Xattrs = map[string][]byte{}
			}
			k := d.str(MaxNameLen)
			in.Xattrs[k] = d.bytes(MaxXattrValueLen)
		}
		if format == 1 {
			in.Content = decodeContent(d)
			in.Version = d.ts()
		} else {
			in.Version = d.ts()
			in.Content = decodeContent(d)
			switch d.u8() {
			case contentHere:
			case contentApart:
				ref := inlineRef{in.ID, in.Version}
				if d.err == nil && c.fetch == nil {
					d.fail("inline content stored apart")
				}
				if d.err == nil {
					b, err := c.fetch(ref)
					if err != nil {
						return nil, fmt.Errorf("namespace: decode state: inode %d: %w", in.ID, err)
					}
					if int64(len(b)) != in.Content.Size || len(b) > MaxInlineLen {
						return nil, fmt.Errorf("namespace: decode state: inode %d: inline content of %d bytes for size %d: %w", in.ID, len(b), in.Content.Size, ErrCorrupt)
					}
					in.Content.Inline = b
					if c.refs == nil {
						c.refs = map[inlineRef]bool{}
					}
					c.refs[ref] = true
				}
			default:
				d.fail("content encoding")
			}
		}
		c.st.inodes[in.ID] = in
	}
	type nrec struct {
		id NodeID
		n  *node
	}
	var nodes []nrec
	for i, n := 0, d.count(maxItems, 10); i < n && d.err == nil; i++ {
		id := NodeID(d.uv())
		nd := &node{parent: NodeID(d.uv()), name: d.str(MaxNameLen), inode: InodeID(d.uv()), nameTS: d.ts(),
			oldParent: NodeID(d.uv()), oldName: d.str(MaxNameLen), delTS: d.ts()}
		if id <= TrashID || c.st.nodes[id] != nil {
			d.fail("node id")
		}
		c.st.nodes[id] = nd
		nodes = append(nodes, nrec{id, nd})
	}
	for i, n := 0, d.count(MaxOpsPerBatch*1024, 4); i < n && d.err == nil; i++ {
		c.ops = append(c.ops, decodeOp(d))
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	// Rebuild the indexes and check the tree is a tree.
	for _, r := range nodes {
		c.st.index(r.id, r.n)
	}
	for _, r := range nodes {
		if !c.st.live(r.id) && c.st.trashRoot(r.id) == 0 {
			return nil, fmt.Errorf("namespace: decode state: node %d detached: %w", r.id, ErrCorrupt)
		}
	}
	return c, nil
}
