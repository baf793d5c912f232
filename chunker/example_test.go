package chunker_test

import (
	"fmt"
	"io"
	"log"
	"strings"

	"github.com/reefproject/reef/chunker"
)

func Example() {
	// Small bounds, so that a short input has several chunks; real callers
	// use chunker.DefaultParams().
	p := chunker.Params{Min: 64, Avg: 256, Max: 1024}
	input := strings.Repeat("Reef splits files into content-defined chunks. ", 40)
	c, err := chunker.New(strings.NewReader(input), p)
	if err != nil {
		log.Fatal(err)
	}
	var lengths []int
	distinct := map[string]bool{}
	for {
		b, err := c.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		// b is only valid until the next call to Next; string(b) copies it.
		lengths = append(lengths, len(b))
		distinct[string(b)] = true
	}
	fmt.Println("chunk lengths:", lengths)
	fmt.Println("distinct chunks:", len(distinct))
	// Output:
	// chunk lengths: [160 141 141 141 141 141 141 141 141 141 141 141 141 28]
	// distinct chunks: 3
}
