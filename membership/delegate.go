package membership

import (
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate supplies this node's metadata to memberlist. It is a distinct
// type so that Node does not export memberlist's callback methods.
type delegate Node

// NodeMeta returns the encoded local Meta, which Start and UpdateMeta have
// already checked against MaxMetaSize.
func (d *delegate) NodeMeta(limit int) []byte {
	d.metaMu.Lock()
	defer d.metaMu.Unlock()
	if len(d.metaBytes) > limit {
		d.log.Error("membership: encoded meta exceeds gossip limit; advertising none",
			"id", d.id, "size", len(d.metaBytes), "limit", limit)
		return nil
	}
	return append([]byte(nil), d.metaBytes...)
}

// NotifyMsg ignores user messages; reef does not send any over gossip.
func (d *delegate) NotifyMsg([]byte) {}

// GetBroadcasts has no user broadcasts to add.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState has no user state to exchange.
func (d *delegate) LocalState(join bool) []byte { return nil }

// MergeRemoteState ignores remote user state.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {}

// events receives memberlist's join/leave/update callbacks. memberlist
// calls them one at a time while holding its node table lock, so they must
// be quick and must not call back into memberlist. The *memberlist.Node is
// only read during the call.
type events Node

// NotifyJoin records a new (or returning) member as alive.
func (e *events) NotifyJoin(nd *memberlist.Node) { e.upsert(nd, false) }

// NotifyUpdate records a member's new metadata or address.
func (e *events) NotifyUpdate(nd *memberlist.Node) { e.upsert(nd, false) }

// NotifyLeave records a member as dead, or as left if it said goodbye.
func (e *events) NotifyLeave(nd *memberlist.Node) { e.upsert(nd, true) }

func (e *events) upsert(nd *memberlist.Node, gone bool) {
	// memberlist holds its node lock during callbacks, so reading its
	// state here is race-free.
	state := StateAlive
	if gone {
		state = StateDead
	}
	if e.stateOK.Load() {
		switch mlState(nd) {
		case memberlist.StateSuspect:
			state = StateSuspect
		case memberlist.StateDead:
			state = StateDead
		case memberlist.StateLeft:
			state = StateLeft
		}
	}
	addr := nd.Address()
	meta, err := DecodeMeta(nd.Meta)
	if err != nil && !gone {
		e.log.Warn("membership: ignoring undecodable meta", "id", e.id, "member", nd.Name, "err", err)
	}
	now := time.Now()

	n := (*Node)(e)
	n.mu.Lock()
	defer n.mu.Unlock()
	m := n.members[nd.Name]
	if m == nil {
		m = &Member{ID: nd.Name}
		n.members[nd.Name] = m
	}
	m.GossipAddr = addr
	if err == nil {
		m.Meta = meta
	}
	m.State = state
	m.LastSeen = now
	n.gen++
	n.notifyLocked()
}
