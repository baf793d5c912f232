package addr

import (
	"errors"
	"strings"
	"testing"
)

func TestParseRoundTrip(t *testing.T) {
	a := Sum([]byte("hello"))
	if got, want := a.String(), "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"; got != want {
		t.Fatalf("Sum(hello) = %s, want %s", got, want)
	}
	b, err := Parse(a.String())
	if err != nil {
		t.Fatal(err)
	}
	if b != a {
		t.Errorf("Parse(String()) = %v, want %v", b, a)
	}
	if !a.Verify([]byte("hello")) || a.Verify([]byte("hellO")) {
		t.Error("Verify gives wrong answers")
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "want 64 hex digits, got 0"},
		{"short", "abcd", "got 4"},
		{"nothex", strings.Repeat("zz", 32), "not hex"},
		{"long", strings.Repeat("a", 200), "got 200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.in)
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse(%q) error = %v, want one containing %q", tc.in, err, tc.want)
			}
		})
	}
}
