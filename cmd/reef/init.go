package main

import (
	"context"
	"fmt"
	"io"

	"github.com/reefproject/reef/crypt"
)

func runInitCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("init", "--key FILE", stderr)
	key := fs.String("key", "", "where to write the new volume key (must not exist)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	if *key == "" {
		return usagef("--key FILE is required")
	}
	if err := crypt.GenerateKeyFile(*key); err != nil {
		return err
	}
	k, err := crypt.LoadKeyFile(*key)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote volume key %s (volume %s); start every peer with --key %s and keep a copy: without it the data cannot be read\n", *key, k.VolumeID(), *key)
	return nil
}

func runVersionCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fmt.Fprintln(stdout, "reef", version)
	return nil
}
