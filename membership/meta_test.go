package membership

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestMetaRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		meta Meta
	}{
		{"zero", Meta{}},
		{"typical", Meta{DataAddr: "127.0.0.1:7000", Zone: "rack-a", Capacity: 1 << 40, Free: 1 << 39, Used: 12345, Shards: 17, Version: "v0.1.0"}},
		{"ipv6", Meta{DataAddr: "[::1]:9000", Zone: "z", Version: "dev"}},
		{"extremes", Meta{Capacity: math.MaxInt64, Free: math.MinInt64, Used: -1, Shards: 1}},
		{"unicode", Meta{Zone: "zone-ü-東京", Version: "✓"}},
		{"large strings", Meta{DataAddr: strings.Repeat("a", 150), Zone: strings.Repeat("b", 150), Version: strings.Repeat("c", 150)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.meta.Encode()
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if len(b) > MaxMetaSize {
				t.Fatalf("encoded %d bytes > %d", len(b), MaxMetaSize)
			}
			got, err := DecodeMeta(b)
			if err != nil {
				t.Fatalf("DecodeMeta: %v", err)
			}
			if got != tc.meta {
				t.Fatalf("round trip: got %+v, want %+v", got, tc.meta)
			}
		})
	}
}

func TestMetaCompact(t *testing.T) {
	m := Meta{DataAddr: "127.0.0.1:7000", Zone: "a", Capacity: 1 << 40, Free: 1 << 39, Used: 1 << 30, Shards: 1000, Version: "v1.2.3"}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 64 {
		t.Errorf("typical meta encodes to %d bytes, want <= 64", len(b))
	}
}

func TestMetaEncodeTooLarge(t *testing.T) {
	for _, m := range []Meta{
		{Zone: strings.Repeat("z", MaxMetaSize)},
		{DataAddr: strings.Repeat("a", 200), Zone: strings.Repeat("b", 200), Version: strings.Repeat("c", 110)},
		{Version: strings.Repeat("v", 1<<20)},
	} {
		_, err := m.Encode()
		if !errors.Is(err, ErrMetaTooLarge) {
			t.Errorf("Encode(len %d): err = %v, want ErrMetaTooLarge", len(m.DataAddr)+len(m.Zone)+len(m.Version), err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "membership: ") {
			t.Errorf("error %q lacks package prefix", err)
		}
	}
}

func TestMetaEncodeInvalidUTF8(t *testing.T) {
	if _, err := (Meta{Zone: "\xff"}).Encode(); err == nil {
		t.Fatal("Encode accepted invalid UTF-8")
	}
}

func TestDecodeMetaRejects(t *testing.T) {
	valid, err := Meta{DataAddr: "10.0.0.1:1", Zone: "z", Capacity: 300, Free: 200, Used: 100, Shards: 3, Version: "v"}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"nil":              nil,
		"empty":            {},
		"format zero":      append([]byte{0}, valid[1:]...),
		"oversize":         make([]byte, MaxMetaSize+1),
		"huge length":      {1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"overlong uvarint": {1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01},
		"length past end":  {1, 5, 'a', 'b'},
		"bad utf8":         {1, 1, 0xff, 0, 0, 0, 0, 0, 0},
		"trailing":         append(append([]byte(nil), valid...), 0),
		"garbage":          []byte("this is not a meta record at all"),
	}
	for i := 1; i < len(valid); i++ {
		cases["truncated/"+string(rune('a'+i))] = valid[:i]
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			m, err := DecodeMeta(b)
			if err == nil {
				t.Fatalf("DecodeMeta(%x) = %+v, want error", b, m)
			}
			if !strings.HasPrefix(err.Error(), "membership: ") {
				t.Errorf("error %q lacks package prefix", err)
			}
			if m != (Meta{}) {
				t.Errorf("DecodeMeta returned non-zero Meta with error: %+v", m)
			}
		})
	}
}

func TestDecodeMetaNewerFormat(t *testing.T) {
	want := Meta{DataAddr: "h:1", Zone: "z", Capacity: 9, Version: "v9"}
	b, err := want.Encode()
	if err != nil {
		t.Fatal(err)
	}
	b[0] = metaFormat + 1
	b = append(b, 0x42, 0x43) // fields a future version appended
	got, err := DecodeMeta(b)
	if err != nil {
		t.Fatalf("DecodeMeta of newer format: %v", err)
	}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func FuzzDecodeMeta(f *testing.F) {
	for _, m := range []Meta{{}, {DataAddr: "127.0.0.1:1", Zone: "a", Capacity: 1, Free: -1, Used: 2, Shards: 3, Version: "v"}} {
		b, err := m.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0xff})
	f.Add([]byte{2, 0, 0, 0, 0, 0, 0, 0, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMeta(b)
		if err != nil {
			if m != (Meta{}) {
				t.Fatalf("non-zero Meta with error")
			}
			return
		}
		if len(b) > MaxMetaSize {
			t.Fatalf("accepted %d bytes", len(b))
		}
		enc, err := m.Encode()
		if err != nil {
			t.Fatalf("decoded Meta %+v does not re-encode: %v", m, err)
		}
		m2, err := DecodeMeta(enc)
		if err != nil || m2 != m {
			t.Fatalf("re-encode round trip: %+v, %v; want %+v", m2, err, m)
		}
	})
}
