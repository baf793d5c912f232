package namespace

import (
	"errors"
	"testing"
)

// TestSpecialFiles: FIFOs, sockets and devices are created, replicated and
// checkpointed with their type and device number, and take no content.
func TestSpecialFiles(t *testing.T) {
	a, b := newPeer(t, "a", nil), newPeer(t, "b", nil)
	for _, tc := range []struct {
		name   string
		typ    Type
		target string
	}{{"fifo", Fifo, ""}, {"sock", Socket, ""}, {"null", CharDev, "259"}, {"disk", BlockDev, "2048"}} {
		e, err := a.Create(bg, RootID, tc.name, tc.typ, Attr{Mode: 0o640}, tc.target)
		if err != nil {
			t.Fatalf("create %s: %v", tc.name, err)
		}
		if e.Inode.Type != tc.typ || e.Inode.Target != tc.target || e.Inode.Mode != 0o640 || e.Inode.Nlink != 1 {
			t.Errorf("%s: %+v", tc.name, e.Inode)
		}
		if _, err := a.SetContent(bg, e.Inode.ID, Content{Size: 1, Inline: []byte("x")}, e.Inode.Version); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: content of a special file: %v, want ErrInvalid", tc.name, err)
		}
	}
	if _, err := a.Create(bg, RootID, "bad", CharDev, Attr{}, "not a number"); !errors.Is(err, ErrInvalid) {
		t.Errorf("device with a bad number: %v, want ErrInvalid", err)
	}
	syncAll(t, a, b)
	sameViews(t, a, b)
	a.reopen(t, false)
	if e := mustEntry(t, a.Namespace, "/null"); e.Inode.Type != CharDev || e.Inode.Target != "259" {
		t.Errorf("after reopen: %+v", e.Inode)
	}
	if err := a.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	a.reopen(t, true)
	if e := mustEntry(t, a.Namespace, "/fifo"); e.Inode.Type != Fifo {
		t.Errorf("after checkpoint and crash: %+v", e.Inode)
	}
}
