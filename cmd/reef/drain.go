package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/reefproject/reef/api"
)

func runDrainCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newFlags("drain", "[--peer HOST:PORT] PEER   (a peer id or its HOST:PORT)", stderr)
	cf.register(fs)
	noWait := fs.Bool("no-wait", false, "start draining and return")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want exactly one PEER")
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	st, err := cl.Status(ctx)
	if err != nil {
		return err
	}
	var target *api.Member
	for i, m := range st.Members {
		if m.ID == pos[0] || m.DataAddr == pos[0] {
			target = &st.Members[i]
		}
	}
	if target == nil {
		return fmt.Errorf("no member %q (see reef status)", pos[0])
	}
	if target.State != "alive" {
		return fmt.Errorf("%s is %s: only a live peer can hand its shards over (repair rebuilds a gone peer's shards)", target.ID, target.State)
	}
	tc, err := api.NewClient(target.DataAddr, cl.Token)
	if err != nil {
		return err
	}
	d, err := tc.Drain(ctx)
	if err != nil {
		return err
	}
	start := d.Shards
	fmt.Fprintf(stderr, "draining %s: %d shards to move\n", target.ID, start)
	if *noWait {
		return nil
	}
	bar := newProgress(stderr, isTerminal(os.Stderr), "drain", start)
	for d.Shards > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		if d, err = tc.DrainProgress(ctx); err != nil {
			return err
		}
		bar.mu.Lock()
		bar.done = start - d.Shards
		bar.mu.Unlock()
		bar.add(0)
	}
	bar.finish()
	fmt.Fprintf(stdout, "%s holds no shards: it can leave safely (stop it with SIGTERM)\n", target.ID)
	return nil
}
