package main

import (
	"context"
	"fmt"
	"io"
	"os"
)

func runPutCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newFlags("put", "[--peer HOST:PORT] FILE   (FILE '-' reads stdin)", stderr)
	cf.register(fs)
	quiet := fs.Bool("q", false, "print only the address")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want exactly one FILE, got %d arguments", len(pos))
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	var in io.Reader = os.Stdin
	size := int64(-1)
	name := pos[0]
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", name)
		}
		in, size = f, fi.Size()
	}
	bar := newProgress(stderr, !*quiet && isTerminal(os.Stderr), "put", size)
	res, err := cl.PutFile(ctx, bar.reader(in), size)
	bar.finish()
	if err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	if !*quiet {
		fmt.Fprintf(stderr, "stored %s: %s in %d chunks (%d new shards, %d already stored)\n", name, humanBytes(res.Size), res.Chunks, res.NewShards, res.DupShards)
	}
	fmt.Fprintln(stdout, res.Addr)
	return nil
}
