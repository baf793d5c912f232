package peer

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/reefproject/reef/membership"
)

func TestKnownPeersFile(t *testing.T) {
	live := []membership.Member{
		{ID: "b", GossipAddr: "127.0.0.2:7401"},
		{ID: "self", GossipAddr: "127.0.0.1:7401"},
		{ID: "a", GossipAddr: "127.0.0.3:7401"},
		{ID: "c", GossipAddr: "127.0.0.2:7401"}, // same address twice
		{ID: "d"},                               // none advertised
	}
	got := string(knownAddrs(live, "self"))
	if want := "127.0.0.2:7401\n127.0.0.3:7401\n"; got != want {
		t.Errorf("knownAddrs = %q, want %q", got, want)
	}

	dir := t.TempDir()
	if readKnown(dir) != nil {
		t.Error("readKnown of a directory without the file is not empty")
	}
	if err := writeKnown(dir, []byte(got)); err != nil {
		t.Fatal(err)
	}
	if err := writeKnown(dir, nil); err != nil { // alone: the file stays
		t.Fatal(err)
	}
	if r := readKnown(dir); !slices.Equal(r, []string{"127.0.0.2:7401", "127.0.0.3:7401"}) {
		t.Errorf("readKnown after writeKnown = %q", r)
	}

	for _, tc := range []struct {
		name, content string
		want          []string
	}{
		{"garbage lines skipped", "not an address\n127.0.0.9:7401\n:0\nhost:\n\x00\xff\n  10.0.0.1:9000  \n", []string{"127.0.0.9:7401", "10.0.0.1:9000"}},
		{"empty", "", nil},
		{"one huge line", strings.Repeat("x", 1<<20), nil},
		{"capped", strings.Repeat("127.0.0.1:1\n", 1000), slices.Repeat([]string{"127.0.0.1:1"}, knownMax)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			if err := os.WriteFile(filepath.Join(d, knownFile), []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			if r := readKnown(d); !slices.Equal(r, tc.want) {
				t.Errorf("readKnown = %q, want %q", r, tc.want)
			}
		})
	}
}
