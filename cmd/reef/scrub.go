package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/reefproject/reef/api"
)

func runScrubCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newFlags("scrub", "[--peer HOST:PORT] [--apply] [--json]", stderr)
	cf.register(fs)
	apply := fs.Bool("apply", false, "drop corrupt shards (repair then rebuilds them); without it, only report")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	st, err := cl.Status(ctx)
	if err != nil {
		return err
	}
	// Every live peer scrubs its own shards, in parallel.
	clients := map[string]*api.Client{}
	for _, m := range st.Members {
		if m.State != "alive" && m.State != "suspect" {
			continue
		}
		c, err := api.NewClient(m.DataAddr, cl.Token)
		if err != nil {
			return err
		}
		if _, err := c.Scrub(ctx, *apply); err != nil {
			return fmt.Errorf("start scrub on %s: %w", m.ID, err)
		}
		clients[m.ID] = c
	}
	bar := newProgress(stderr, !*asJSON && isTerminal(os.Stderr), "scrub", -1)
	results := map[string]api.ScrubResult{}
	for {
		running := false
		var checked, total int64
		for id, c := range clients {
			r, err := c.ScrubProgress(ctx)
			if err != nil {
				r = api.ScrubResult{Peer: id, Error: err.Error()}
			}
			results[id] = r
			running = running || r.Running
			checked += r.Bytes
			total += r.Total
		}
		bar.mu.Lock()
		bar.done = checked
		bar.mu.Unlock()
		bar.add(0)
		if !running {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
	bar.finish()
	var out []api.ScrubResult
	var corrupt int64
	for _, m := range st.Members {
		if r, ok := results[m.ID]; ok {
			out = append(out, r)
			corrupt += r.Corrupt
		}
	}
	if *asJSON {
		return printJSON(stdout, out)
	}
	tw := newTable(stdout)
	fmt.Fprintln(tw, "PEER\tSHARDS CHECKED\tBYTES\tCORRUPT\tDROPPED\tERROR")
	for _, r := range out {
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%d\t%d\t%s\n", r.Peer, r.Checked, r.Total, humanBytes(r.Bytes), r.Corrupt, r.Dropped, r.Error)
	}
	tw.Flush()
	switch {
	case corrupt == 0:
		fmt.Fprintln(stdout, "every shard verified")
	case *apply:
		fmt.Fprintf(stdout, "%d corrupt shards dropped; repair rebuilds them (reef health shows progress)\n", corrupt)
	default:
		fmt.Fprintf(stdout, "%d corrupt shards found; run with --apply to drop them so repair rebuilds them\n", corrupt)
	}
	return nil
}
