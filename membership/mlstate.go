package membership

import (
	"time"
	"unsafe"

	"github.com/hashicorp/memberlist"
)

// memberlist v0.7.0 never fills in the exported memberlist.Node.State
// field: the real state lives in the unexported nodeState struct that
// embeds Node as its first field and declares its own State field, which
// shadows Node.State. Every *memberlist.Node that memberlist hands out
// (Members, LocalNode, event callbacks) points at the Node embedded in such
// a nodeState, so the state can be read through a struct with the same
// layout. Start verifies the layout on the local node and disables state
// reads (treating every departure as dead and never reporting suspect) if
// it does not match, e.g. after a memberlist upgrade; TestNodeStateLayout
// catches that.
type mlNodeState struct {
	memberlist.Node
	Incarnation uint32
	State       memberlist.NodeStateType
	StateChange time.Time
}

// mlState returns memberlist's own state for nd. nd must come from
// memberlist. It reads without memberlist's lock unless called from an
// event callback.
func mlState(nd *memberlist.Node) memberlist.NodeStateType {
	return (*mlNodeState)(unsafe.Pointer(nd)).State
}

// layoutOK reports whether self, memberlist's record of a freshly created
// local node, looks like a nodeState: incarnation at least 1, alive, and a
// recent state change.
func layoutOK(self *memberlist.Node) bool {
	s := (*mlNodeState)(unsafe.Pointer(self))
	age := time.Since(s.StateChange)
	return s.Incarnation >= 1 && s.Incarnation < 1000 && s.State == memberlist.StateAlive &&
		age >= 0 && age < time.Minute
}
