package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"4096", 4096, false},
		{"500M", 500 << 20, false},
		{"10GiB", 10 << 30, false},
		{"1.5T", 3 << 39, false},
		{"2KB", 2000, false},
		{"7b", 7, false},
		{"lots", 0, true},
		{"-1", 0, true},
		{"", 0, true},
	} {
		got, err := parseSize(tc.in)
		if (err != nil) != tc.bad || (!tc.bad && got != tc.want) {
			t.Errorf("parseSize(%q) = %d, %v; want %d (error %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	for _, tc := range []struct {
		in   int64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {3 << 20, "3.0 MiB"}, {5 << 40, "5.0 TiB"}} {
		if got := humanBytes(tc.in); got != tc.want {
			t.Errorf("humanBytes(%d) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseArgsInterleaved(t *testing.T) {
	fs := newFlags("get", "", &bytes.Buffer{})
	out := fs.String("o", "-", "")
	q := fs.Bool("q", false, "")
	pos, err := parseArgs(fs, []string{"ADDR", "-o", "FILE", "-q", "--", "-x"})
	if err != nil {
		t.Fatal(err)
	}
	if *out != "FILE" || !*q || strings.Join(pos, ",") != "ADDR,-x" {
		t.Errorf("o=%q q=%v pos=%v", *out, *q, pos)
	}
}

func TestRunExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage"},
		{[]string{"nope"}, 2, "unknown command"},
		{[]string{"get"}, 2, "want exactly one ADDR"},
		{[]string{"get", "xyz"}, 2, "64 hex digits"},
		{[]string{"init"}, 2, "--key FILE is required"},
		{[]string{"status", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"status", "--peer", "127.0.0.1:1"}, 1, "connection refused"},
		{[]string{"version"}, 0, ""},
	} {
		var out, errb bytes.Buffer
		code := run(context.Background(), tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("run(%q) = %d, stderr %q; want %d and %q", tc.args, code, errb.String(), tc.code, tc.want)
		}
		if n := strings.Count(strings.TrimSpace(errb.String()), "\n"); tc.code == 1 && n > 0 {
			t.Errorf("run(%q): error is %d lines, want one", tc.args, n+1)
		}
	}
}
