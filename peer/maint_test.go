package peer

import "testing"

func TestPeerRedundancy(t *testing.T) {
	for _, tc := range []struct {
		name string
		held map[int][]string
		k    int
		want int
	}{
		{"6 shards on 6 peers", map[int][]string{0: {"a"}, 1: {"b"}, 2: {"c"}, 3: {"d"}, 4: {"e"}, 5: {"f"}}, 4, 2},
		{"one peer holds two", map[int][]string{0: {"a"}, 1: {"a"}, 2: {"c"}, 3: {"d"}, 4: {"e"}, 5: {"f"}}, 4, 1},
		{"degraded by one", map[int][]string{0: {"a"}, 1: {"b"}, 2: {"c"}, 3: {"d"}, 4: {"e"}}, 4, 1},
		{"at k", map[int][]string{0: {"a"}, 1: {"b"}, 2: {"c"}, 3: {"d"}}, 4, 0},
		{"lost", map[int][]string{0: {"a"}, 1: {"b"}, 2: {"c"}}, 4, -1},
		{"two peers hold two each", map[int][]string{0: {"a"}, 1: {"a"}, 2: {"b"}, 3: {"b"}, 4: {"e"}, 5: {"f"}}, 4, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := peerRedundancy(tc.held, tc.k); got != tc.want {
				t.Errorf("peerRedundancy = %d, want %d", got, tc.want)
			}
		})
	}
}
