package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/reefproject/reef/api"
)

func runRepairCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newFlags("repair", "[--peer HOST:PORT] [--apply] [--json] [PATH]", stderr)
	cf.register(fs)
	apply := fs.Bool("apply", false, "rebuild now (without it, only report what would be rebuilt)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("at most one PATH")
	}
	path := ""
	if len(pos) == 1 {
		path = pos[0]
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	plan, err := cl.Repair(ctx, path, *apply)
	if err != nil {
		return err
	}
	if *apply {
		bar := newProgress(stderr, !*asJSON && isTerminal(os.Stderr), "repair", plan.Bytes)
		for !plan.Done {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
			if plan, err = cl.RepairProgress(ctx); err != nil {
				return err
			}
			if plan.Shards > 0 {
				bar.mu.Lock()
				bar.done = plan.Bytes * int64(plan.Rebuilt) / int64(plan.Shards)
				bar.mu.Unlock()
				bar.add(0)
			}
		}
		bar.finish()
	}
	if *asJSON {
		return printJSON(stdout, plan)
	}
	printPlan(stdout, plan)
	if len(plan.Errors) > 0 && *apply {
		return fmt.Errorf("%d stripes could not be repaired", len(plan.Errors))
	}
	return nil
}

func printPlan(w io.Writer, p api.RepairPlan) {
	verb := "would rebuild"
	if p.Apply {
		verb = "rebuilt"
	}
	if p.Chunks == 0 {
		fmt.Fprintln(w, "nothing to repair: every chunk that can be rebuilt has all its shards")
	} else if p.Apply {
		fmt.Fprintf(w, "%s %d of %d shards in %d chunks (%s)\n", verb, p.Rebuilt, p.Shards, p.Chunks, humanBytes(p.Bytes))
	} else {
		fmt.Fprintf(w, "%s %d shards in %d chunks (%s); run with --apply to do it now\n", verb, p.Shards, p.Chunks, humanBytes(p.Bytes))
	}
	for _, s := range p.Samples {
		fmt.Fprintf(w, "  %s\n", s)
	}
	if p.Lost > 0 {
		fmt.Fprintf(w, "%d chunks have fewer than k shards and cannot be rebuilt\n", p.Lost)
	}
	for _, e := range p.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
}
