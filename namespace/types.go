package namespace

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"sync"
	"time"
)

// Sentinel errors. Write methods return them wrapped with %w; check with errors.Is.
var (
	// ErrNotExist: the node, inode or name does not exist in the local view.
	ErrNotExist = errors.New("namespace: does not exist")
	// ErrExist: the name is already taken.
	ErrExist = errors.New("namespace: already exists")
	// ErrNotEmpty: the directory has entries.
	ErrNotEmpty = errors.New("namespace: directory not empty")
	// ErrNotDir: a directory was required.
	ErrNotDir = errors.New("namespace: not a directory")
	// ErrIsDir: a non-directory was required.
	ErrIsDir = errors.New("namespace: is a directory")
	// ErrInvalid: a bad argument (name with '/' or NUL, ".", "..", moving a
	// directory into itself, malformed op).
	ErrInvalid = errors.New("namespace: invalid argument")
	// ErrClockAhead: a peer's ops carry timestamps further ahead of this
	// peer's clock than MaxClockAhead: one of the two clocks is wrong.
	ErrClockAhead = errors.New("namespace: peer's clock is ahead of ours")
	// ErrNoXattr: the extended attribute is not set.
	ErrNoXattr = errors.New("namespace: no such extended attribute")
	// ErrNoXattrRoom: the inode has MaxXattrs extended attributes already
	// (a local filesystem answers ENOSPC when its attribute space is full).
	ErrNoXattrRoom = errors.New("namespace: no room for another extended attribute")
	// ErrNameTooLong: a name is longer than MaxNameLen bytes.
	ErrNameTooLong = errors.New("namespace: name too long")
	// ErrCompacted: OpsSince cannot serve the request because some needed
	// ops were compacted away; the caller should use Snapshot instead.
	ErrCompacted = errors.New("namespace: ops compacted")
	// ErrCorrupt: stored or received bytes failed to decode.
	ErrCorrupt = errors.New("namespace: corrupt data")
	// ErrClosed: the Namespace was closed.
	ErrClosed = errors.New("namespace: closed")
)

// Limits on names and values, enforced on local writes and on decoded ops.
const (
	MaxNameLen       = 255
	MaxTargetLen     = 4096
	MaxXattrValueLen = 64 << 10
	MaxInlineLen     = 1 << 20
	MaxPeerLen       = 255
	MaxXattrs        = 1024
)

// NodeID identifies a dentry (a node of the tree).
type NodeID uint64

// InodeID identifies an inode (attributes and content). A directory's inode
// ID equals its NodeID.
type InodeID uint64

// Well-known nodes. They always exist and can never be moved.
const (
	// RootID is the root directory of the volume.
	RootID NodeID = 1
	// TrashID is the parent of deleted nodes. It is never shown.
	TrashID NodeID = 2
)

// Type is the kind of an inode.
type Type uint8

// Inode types. Fifo, Socket, CharDev and BlockDev are special files
// (mknod): attributes only, no content; a device's number is its Target,
// in decimal (the kernel's encoding of major and minor).
const (
	File     Type = 1
	Dir      Type = 2
	Symlink  Type = 3
	Fifo     Type = 4
	Socket   Type = 5
	CharDev  Type = 6
	BlockDev Type = 7
)

// Special reports whether t is a FIFO, socket or device.
func (t Type) Special() bool { return t >= Fifo && t <= BlockDev }

// String returns "file", "dir", "symlink", "fifo", "socket", "chardev" or "blockdev".
func (t Type) String() string {
	switch t {
	case File:
		return "file"
	case Dir:
		return "dir"
	case Symlink:
		return "symlink"
	case Fifo:
		return "fifo"
	case Socket:
		return "socket"
	case CharDev:
		return "chardev"
	case BlockDev:
		return "blockdev"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Timestamp is a hybrid logical clock reading. Timestamps are totally ordered
// by (Wall, Logical, Peer); every op has a distinct Timestamp.
type Timestamp struct {
	Wall    int64 // unix nanoseconds
	Logical uint32
	Peer    string
}

// Compare returns -1, 0 or +1 as t is before, equal to or after u.
func (t Timestamp) Compare(u Timestamp) int {
	switch {
	case t.Wall < u.Wall:
		return -1
	case t.Wall > u.Wall:
		return 1
	case t.Logical < u.Logical:
		return -1
	case t.Logical > u.Logical:
		return 1
	case t.Peer < u.Peer:
		return -1
	case t.Peer > u.Peer:
		return 1
	}
	return 0
}

// Less reports whether t orders before u.
func (t Timestamp) Less(u Timestamp) bool { return t.Compare(u) < 0 }

// IsZero reports whether t is the zero Timestamp.
func (t Timestamp) IsZero() bool { return t.Wall == 0 && t.Logical == 0 && t.Peer == "" }

// String formats t for logs: RFC 3339 wall time, logical counter and peer.
func (t Timestamp) String() string {
	return fmt.Sprintf("%s.%d@%s", time.Unix(0, t.Wall).UTC().Format(time.RFC3339Nano), t.Logical, t.Peer)
}

// Clock is a hybrid logical clock (Kulkarni et al., "Logical Physical
// Clocks", 2014). Now returns a Timestamp above every Timestamp returned or
// observed before. It is safe for concurrent use.
type Clock struct {
	peer string
	now  func() int64 // physical clock, unix ns; replaceable in tests

	mu sync.Mutex // guards l and c
	l  int64
	c  uint32
}

// NewClock returns a Clock stamping Timestamps with peer.
func NewClock(peer string) *Clock {
	return &Clock{peer: peer, now: func() int64 { return time.Now().UnixNano() }}
}

// Now returns a new Timestamp greater than all previous ones.
func (c *Clock) Now() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	pt := c.now()
	if pt > c.l {
		c.l, c.c = pt, 0
	} else {
		c.tick()
	}
	return Timestamp{Wall: c.l, Logical: c.c, Peer: c.peer}
}

// tick increments the logical part, spilling into the wall part on overflow.
func (c *Clock) tick() {
	if c.c == math.MaxUint32 {
		c.l++
		c.c = 0
		return
	}
	c.c++
}

// Observe merges a Timestamp received from elsewhere, so that later calls
// to Now return a greater Timestamp.
func (c *Clock) Observe(ts Timestamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pt := c.now()
	old := c.l
	l := max(old, ts.Wall, pt)
	switch {
	case l == old && l == ts.Wall:
		c.c = max(c.c, ts.Logical)
		c.l = l
		c.tick()
	case l == old:
		c.tick()
	case l == ts.Wall:
		c.l, c.c = l, ts.Logical
		c.tick()
	default:
		c.l, c.c = l, 0
	}
}

// MaxClockAhead bounds how far ahead of this peer's clock a remote op's
// timestamp may be. An op stamped further ahead is refused
// (ErrClockAhead), and so is a peer's clock in an anti-entropy answer:
// observing it would pull every peer's hybrid clock, and so every later
// mtime and ctime, to that peer's wrong time (a day ahead, every file
// changed from then on would show tomorrow's date until tomorrow). The
// peer with the wrong clock sees its pushes refused, so its closes fail
// loudly instead.
const MaxClockAhead = time.Minute

// ahead reports whether ts is further ahead of the physical clock than
// MaxClockAhead.
func (c *Clock) ahead(ts Timestamp) bool {
	return ts.Wall > c.now()+int64(MaxClockAhead)
}

// Last returns the latest Timestamp issued or observed (with this peer's id).
func (c *Clock) Last() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Timestamp{Wall: c.l, Logical: c.c, Peer: c.peer}
}

// Content describes a file's data: a manifest address (kept elsewhere) or,
// for small files, the bytes inline.
type Content struct {
	Manifest [32]byte // zero if none
	Size     int64
	Inline   []byte // the data itself when Manifest is zero
	// Zero is how many of a chunked file's bytes are in chunks of zeros:
	// holes, which take no room (st_blocks leaves them out). 0 when
	// unknown, and for inline files.
	Zero int64
}

// Inode holds the attributes and content of a file, directory or symlink.
// Values returned by the Namespace are copies the caller owns.
type Inode struct {
	ID     InodeID
	Type   Type
	Mode   uint32 // permission bits incl. setuid/setgid/sticky (07777)
	Uid    uint32
	Gid    uint32
	Size   int64
	Nlink  uint32 // files: live dentries; dirs: 2 + subdirectories
	Atime  int64  // unix ns
	Mtime  int64
	Ctime  int64
	Target string // symlink target; a device's number in decimal
	Xattrs map[string][]byte
	// Content is the file data (files only).
	Content Content
	// Version is the Timestamp of the last content op (or of the op that
	// created the inode). Writers pass it back as SetContent's base.
	Version Timestamp
}

func (in *Inode) clone() *Inode {
	c := *in
	if in.Xattrs != nil {
		c.Xattrs = maps.Clone(in.Xattrs)
	}
	return &c
}

// Attr are the initial attributes given to Create. Zero times mean "now"
// (the op's Timestamp).
type Attr struct {
	Mode  uint32
	Uid   uint32
	Gid   uint32
	Atime int64
	Mtime int64
	Ctime int64
}

// AttrMask selects the fields of an AttrChange to set.
type AttrMask uint32

// AttrChange fields.
const (
	SetMode AttrMask = 1 << iota
	SetUid
	SetGid
	SetAtime
	SetMtime
)

// AttrChange is a chmod/chown/utimens. Fields not selected by Mask are
// ignored. Ctime is set to the op's time. Truncation is a SetContent.
type AttrChange struct {
	Mask  AttrMask
	Mode  uint32
	Uid   uint32
	Gid   uint32
	Atime int64
	Mtime int64
}

// Merge returns a with b applied over it: b's fields win where b sets them.
func (a AttrChange) Merge(b AttrChange) AttrChange {
	if b.Mask&SetMode != 0 {
		a.Mode = b.Mode
	}
	if b.Mask&SetUid != 0 {
		a.Uid = b.Uid
	}
	if b.Mask&SetGid != 0 {
		a.Gid = b.Gid
	}
	if b.Mask&SetAtime != 0 {
		a.Atime = b.Atime
	}
	if b.Mask&SetMtime != 0 {
		a.Mtime = b.Mtime
	}
	a.Mask |= b.Mask
	return a
}

// ApplyTo returns in with the change applied (ctime and version aside).
func (a AttrChange) ApplyTo(in Inode) Inode {
	if a.Mask&SetMode != 0 {
		in.Mode = a.Mode & 0o7777
	}
	if a.Mask&SetUid != 0 {
		in.Uid = a.Uid
	}
	if a.Mask&SetGid != 0 {
		in.Gid = a.Gid
	}
	if a.Mask&SetAtime != 0 {
		in.Atime = a.Atime
	}
	if a.Mask&SetMtime != 0 {
		in.Mtime = a.Mtime
	}
	return in
}

// InodeInit is the inode record created by a Move that creates a new file,
// directory or symlink. Its Version is the Move's Timestamp.
type InodeInit struct {
	Type   Type
	Mode   uint32
	Uid    uint32
	Gid    uint32
	Atime  int64
	Mtime  int64
	Ctime  int64
	Target string
}

// OpKind is the kind of an Op.
type OpKind uint8

// Op kinds.
const (
	OpMove        OpKind = 1
	OpSetAttr     OpKind = 2
	OpSetContent  OpKind = 3
	OpSetXattr    OpKind = 4
	OpRemoveXattr OpKind = 5
)

// Op is one replicated mutation. Which fields are used depends on Kind:
//
//   - OpMove: Node, NewParent, Name, Inode, Base, Init. Creates Node when it
//     does not exist (Inode names the inode; Init, if set, creates the inode
//     too), otherwise moves it; NewParent == TrashID deletes it, and Base is
//     then the content Version the deleter saw.
//   - OpSetAttr: Inode, Attr.
//   - OpSetContent: Inode, Content, Base (the Version the writer saw).
//   - OpSetXattr: Inode, Name, Value. OpRemoveXattr: Inode, Name.
//
// Origin always equals TS.Peer. Seq is the origin's counter 1, 2, 3, ...
type Op struct {
	Kind      OpKind
	TS        Timestamp
	Origin    string
	Seq       uint64
	Node      NodeID
	NewParent NodeID
	Name      string
	Inode     InodeID
	Base      Timestamp
	Init      *InodeInit
	Attr      AttrChange
	Content   Content
	Value     []byte
}

// Entry is a dentry as seen in the local view.
type Entry struct {
	Node   NodeID
	Parent NodeID
	Name   string // displayed name
	Inode  Inode
}

// DirName is one name in one directory.
type DirName struct {
	Dir  NodeID
	Name string
}

// Change lists what applied remote ops changed, for cache invalidation.
type Change struct {
	Nodes  []NodeID
	Inodes []InodeID
	Dirs   []NodeID  // directories whose listing changed
	Names  []DirName // displayed names added, removed or renamed
	// All is set when everything may have changed (InstallSnapshot, or
	// changes too many to list).
	All bool
}

// Stats summarises a Namespace.
type Stats struct {
	Nodes     int   // live dentries (excluding the root)
	Inodes    int   // live inodes (including the root)
	Trashed   int   // dentries held in the trash
	Purged    int64 // trash entries purged since Open
	Ops       int64 // ops in the durable log
	UndoOps   int   // ops in the in-memory undo log (newer than the horizon)
	FileBytes int64 // sum of live files' sizes
	// Base is the stability base: ops up to it are folded into the
	// checkpointed state and can no longer be undone.
	Base Timestamp
}

// randomID returns a random 64-bit ID above TrashID.
func randomID() uint64 {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic(fmt.Sprintf("namespace: crypto/rand: %v", err))
		}
		if v := binary.LittleEndian.Uint64(b[:]); v > uint64(TrashID) {
			return v
		}
	}
}

// checkName validates a single path component.
func checkName(name string) error {
	if len(name) > MaxNameLen {
		return fmt.Errorf("namespace: name %.40q...: %w", name, ErrNameTooLong)
	}
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("namespace: name %q: %w", name, ErrInvalid)
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' || name[i] == 0 {
			return fmt.Errorf("namespace: name %q: %w", name, ErrInvalid)
		}
	}
	return nil
}
