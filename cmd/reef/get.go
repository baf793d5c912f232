package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/reefproject/reef/addr"
)

func runGetCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newFlags("get", "[--peer HOST:PORT] ADDR -o FILE   (no -o, or -o -, writes to stdout)", stderr)
	cf.register(fs)
	out := fs.String("o", "-", "file to write (replaced only when the whole file was read)")
	quiet := fs.Bool("q", false, "no progress bar")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want exactly one ADDR, got %d arguments", len(pos))
	}
	a, err := addr.Parse(pos[0])
	if err != nil {
		return usageError{err.Error()}
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	bar := newProgress(stderr, !*quiet && isTerminal(os.Stderr) && *out != "-", "get", -1)
	if *out == "-" {
		_, err := cl.GetFile(ctx, a.String(), stdout, nil)
		return err
	}
	// Write next to the target and rename at the end, so a failed get
	// leaves no partial file behind.
	tmp, err := os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".reef-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = cl.GetFile(ctx, a.String(), bar.writer(tmp), bar.setTotal)
	bar.finish()
	if err != nil {
		tmp.Close()
		return fmt.Errorf("get %s: %w", a.Short(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), *out)
}
