package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"
)

// runLocksCmd lists the volume's file locks (fcntl and flock), as lslocks
// does for a local machine: who holds what, and which peer keeps it.
func runLocksCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newFlags("locks", "[--peer HOST:PORT] [--json]", stderr)
	cf.register(fs)
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
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ls, err := cl.Locks(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, ls)
	}
	if len(ls.Unreachable) > 0 {
		fmt.Fprintf(stdout, "not answering (their locks are missing below): %v\n", ls.Unreachable)
	}
	if len(ls.Locks) == 0 {
		fmt.Fprintln(stdout, "no file locks")
		return nil
	}
	tw := newTable(stdout)
	fmt.Fprintln(tw, "PATH\tTYPE\tMODE\tSTART\tEND\tHOLDER\tPID\tKEEPER")
	for _, l := range ls.Locks {
		path := l.Path
		if path == "" {
			path = fmt.Sprintf("(unlinked, inode %d)", l.Inode)
		}
		end := "EOF"
		if l.End != 1<<63-1 {
			end = strconv.FormatUint(l.End, 10)
		}
		pid := "-"
		if l.PID != 0 {
			pid = strconv.FormatUint(uint64(l.PID), 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", path, l.Family, l.Kind, l.Start, end, l.Holder, pid, l.Keeper)
	}
	return tw.Flush()
}
