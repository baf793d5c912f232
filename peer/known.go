package peer

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/reefproject/reef/membership"
)

// The known-peers file keeps the gossip addresses of the other members
// this peer last saw alive, one per line, so that a restarted peer finds
// the cluster again without --join. Without it a peer started with no
// --join (the first of a cluster, as `make run` starts it) came back alone
// after a restart: the others had marked it gone and never contact a peer
// they consider left, and it had nobody to ask. Its addresses are added to
// --join's at start; membership keeps retrying them while it is alone.
const (
	knownFile     = "known-peers"
	knownMaxBytes = 64 << 10 // bounds a damaged file's read
	knownMax      = 256      // addresses kept
)

// readKnown returns the valid addresses of dir's known-peers file; a
// missing, unreadable or damaged file gives what it can (none at worst).
func readKnown(dir string) []string {
	f, err := os.Open(filepath.Join(dir, knownFile))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(io.LimitReader(f, knownMaxBytes))
	for sc.Scan() && len(out) < knownMax {
		a := strings.TrimSpace(sc.Text())
		if _, port, err := net.SplitHostPort(a); err == nil && port != "" && port != "0" {
			out = append(out, a)
		}
	}
	return out
}

// knownAddrs is the file's content for the live members other than self:
// their gossip addresses, sorted, at most knownMax.
func knownAddrs(live []membership.Member, self string) []byte {
	var addrs []string
	for _, m := range live {
		if m.ID != self && m.GossipAddr != "" {
			addrs = append(addrs, m.GossipAddr)
		}
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	if len(addrs) > knownMax {
		addrs = addrs[:knownMax]
	}
	var b bytes.Buffer
	for _, a := range addrs {
		b.WriteString(a)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// writeKnown replaces dir's known-peers file with content (write, sync,
// rename), unless content is empty: a peer that is alone keeps the
// addresses it knew, which are what it needs to find the others again.
func writeKnown(dir string, content []byte) error {
	if len(content) == 0 {
		return nil
	}
	tmp := filepath.Join(dir, knownFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("peer: known peers: %w", err)
	}
	_, err = f.Write(content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, knownFile))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("peer: known peers: %w", err)
	}
	return nil
}
