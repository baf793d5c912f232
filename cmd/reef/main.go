package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"init", "create a volume key file", runInitCmd},
	{"serve", "run a peer", runServeCmd},
	{"put", "store a file, print its address", runPutCmd},
	{"get", "read a file back by address", runGetCmd},
	{"status", "list the cluster's members", runStatusCmd},
	{"health", "redundancy of the cluster or of a path", runHealthCmd},
	{"repair", "show (or, with --apply, rebuild) missing shards", runRepairCmd},
	{"scrub", "verify every shard on every peer (--apply drops corrupt ones)", runScrubCmd},
	{"drain", "move a peer's shards away so it can leave", runDrainCmd},
	{"locks", "list the file locks (fcntl, flock) held through the mounts", runLocksCmd},
	{"version", "print the version", runVersionCmd},
}

// usageError is a mistake on the command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit status. Errors are
// reported as one line on stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		var ue usageError
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &ue):
			fmt.Fprintf(stderr, "reef %s: %v (see 'reef %s -h')\n", c.name, err, c.name)
			return 2
		case errors.Is(err, context.Canceled) && ctx.Err() != nil:
			fmt.Fprintf(stderr, "reef %s: interrupted\n", c.name)
			return 130
		default:
			fmt.Fprintf(stderr, "reef %s: %s\n", c.name, oneLine(err.Error()))
			return 1
		}
	}
	fmt.Fprintf(stderr, "reef: unknown command %q\n", args[0])
	printUsage(stderr)
	return 2
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: reef COMMAND [flags] [args]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'reef COMMAND -h' for a command's flags.")
}

// newFlags returns a FlagSet that reports errors instead of exiting.
func newFlags(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("reef "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by run
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: reef %s %s\n\nflags:\n", name, usage)
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// parseArgs parses flags that may come before, between or after positional
// arguments ("reef get ADDR -o FILE").
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		err := fs.Parse(args)
		if err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.Usage()
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
