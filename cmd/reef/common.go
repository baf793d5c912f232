package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/reefproject/reef/api"
	"github.com/reefproject/reef/crypt"
)

// defaultPeer is the --listen of `reef serve` without flags, and where
// commands look for a peer when neither --peer nor REEF_PEER is set.
const defaultPeer = "127.0.0.1:7400"

// clientFlags are the flags of every command that talks to a peer.
type clientFlags struct {
	peer string
	key  string
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	def := os.Getenv("REEF_PEER")
	if def == "" {
		def = defaultPeer
	}
	fs.StringVar(&c.peer, "peer", def, "peer to talk to, HOST:PORT (its --listen; env REEF_PEER)")
	fs.StringVar(&c.key, "key", os.Getenv("REEF_KEY"), "volume key file, needed only for a peer on another host (env REEF_KEY)")
}

func (c *clientFlags) client() (*api.Client, error) {
	token := ""
	if c.key != "" {
		k, err := crypt.LoadKeyFile(c.key)
		if err != nil {
			return nil, err
		}
		token = k.PeerToken()
	}
	cl, err := api.NewClient(c.peer, token)
	if err != nil {
		return nil, usageError{err.Error()}
	}
	return cl, nil
}

// printJSON is the one place --json output is written.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newTable is the one place table output is formatted.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// parseSize reads sizes such as 500M, 10GiB, 1.5T, 4096.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	u := strings.ToUpper(t)
	mult := float64(1)
	for _, suf := range []struct {
		s string
		m float64
	}{
		{"TIB", 1 << 40}, {"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10},
		{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
		{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1},
	} {
		if strings.HasSuffix(u, suf.s) {
			mult = suf.m
			u = strings.TrimSpace(strings.TrimSuffix(u, suf.s))
			break
		}
	}
	f, err := strconv.ParseFloat(u, 64)
	if err != nil || f < 0 || f*mult > 1<<62 {
		return 0, fmt.Errorf("bad size %q (examples: 4096, 500M, 10GiB)", s)
	}
	return int64(f * mult), nil
}

// humanBytes prints n with a binary unit.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for x := n / unit; x >= unit && exp < 4; x /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// sizeFlag is a flag.Value for sizes.
type sizeFlag struct{ n *int64 }

func (s sizeFlag) String() string {
	if s.n == nil || *s.n == 0 {
		return ""
	}
	return strings.ReplaceAll(humanBytes(*s.n), " ", "")
}

func (s sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s.n = n
	return nil
}

// listFlag collects a repeatable flag; values may also be comma-separated.
type listFlag struct{ l *[]string }

func (f listFlag) String() string {
	if f.l == nil {
		return ""
	}
	return strings.Join(*f.l, ",")
}

func (f listFlag) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*f.l = append(*f.l, p)
		}
	}
	return nil
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
