package chunker

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// maxLimit is the largest Params.Max that Validate accepts.
const maxLimit = 64 << 20

// minLimit is the smallest Params.Min that Validate accepts.
const minLimit = 64

// initialBuf is the size of the first buffer a Chunker allocates. The buffer
// doubles as needed up to 2*Max, so small inputs never pay for a full-size
// buffer.
const initialBuf = 64 << 10

// maxEmptyReads is how many consecutive (0, nil) reads are tolerated before
// Next gives up with io.ErrNoProgress.
const maxEmptyReads = 100

// Params are the chunk size bounds, in bytes. Every chunk except the last is
// at least Min and at most Max bytes long; on random input the mean chunk
// size is close to Avg (a little above it: see the package documentation).
type Params struct {
	Min, Avg, Max int
}

// DefaultParams returns the bounds reef uses for file contents: Min 256 KiB,
// Avg 1 MiB, Max 4 MiB.
func DefaultParams() Params {
	return Params{Min: 256 << 10, Avg: 1 << 20, Max: 4 << 20}
}

// Validate reports whether p can be used to chunk: Min must be at least 64,
// Min < Avg < Max, Avg must be a power of two and Max at most 64 MiB.
func (p Params) Validate() error {
	switch {
	case p.Min < minLimit:
		return fmt.Errorf("chunker: min size %d is below the minimum of %d bytes", p.Min, minLimit)
	case p.Avg <= p.Min:
		return fmt.Errorf("chunker: average size %d must be greater than min size %d", p.Avg, p.Min)
	case p.Max <= p.Avg:
		return fmt.Errorf("chunker: max size %d must be greater than average size %d", p.Max, p.Avg)
	case p.Max > maxLimit:
		return fmt.Errorf("chunker: max size %d exceeds the limit of %d bytes (64 MiB)", p.Max, maxLimit)
	case p.Avg&(p.Avg-1) != 0:
		return fmt.Errorf("chunker: average size %d is not a power of two", p.Avg)
	}
	return nil
}

// masks returns the judgement masks for normalised chunking (level 2): the
// strict mask, used before the chunk reaches Avg bytes, has log2(Avg)+2 bits
// set and the loose one, used after, log2(Avg)-2. The bits are the high bits
// of the hash below bit 63: high bits depend on the longest window of input
// (bit k of a gear hash depends on the last k+1 bytes), and leaving bit 63
// clear is what lets scan test a hash that has been shifted left by one.
func (p Params) masks() (strict, loose uint64) {
	b := bits.TrailingZeros(uint(p.Avg))
	return highMask(b + 2), highMask(b - 2)
}

// highMask returns a mask of n consecutive one bits ending at bit 62.
func highMask(n int) uint64 {
	return (1<<uint(n) - 1) << uint(63-n)
}

// Chunker splits a stream into content-defined chunks. Create one with New
// and call Next until it returns an error. A Chunker is not safe for
// concurrent use.
type Chunker struct {
	r            io.Reader
	p            Params
	strict       uint64 // mask used for chunk offsets in [Min, Avg)
	loose        uint64 // mask used for chunk offsets in [Avg, Max)
	buf          []byte // grows up to 2*Max and is then reused
	start, end   int    // unconsumed data is buf[start:end]; the current chunk begins at start
	pos          int    // offset in the current chunk where hashing resumes (>= Min)
	h            uint64 // gear hash state at pos
	eof          bool   // r has returned io.EOF
	err          error  // sticky, already wrapped, read error
	maxBufferLen int    // 2*Max
	zcut         int    // zeroCut, once computed
}

// New returns a Chunker reading from r. It fails if p is invalid (see
// Params.Validate) or r is nil. No data is read until the first call to Next.
func New(r io.Reader, p Params) (*Chunker, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if r == nil {
		return nil, errors.New("chunker: nil reader")
	}
	s, l := p.masks()
	return &Chunker{
		r:            r,
		p:            p,
		strict:       s,
		loose:        l,
		pos:          p.Min,
		maxBufferLen: 2 * p.Max,
	}, nil
}

// Next returns the next chunk. The slice is owned by the Chunker and valid
// only until the next call to Next (callers copy if they keep it). It returns
// io.EOF after the last chunk; an empty input yields io.EOF at once (zero
// chunks). Read errors from r are returned wrapped with %w.
//
// A read error is returned once the Chunker needs data beyond the point of
// the error: chunks that lie entirely before it, and whose end could be
// decided without reading further, are still returned first. After an error
// every call returns the same error.
func (c *Chunker) Next() ([]byte, error) {
	for {
		data := c.buf[c.start:c.end]
		if c.eof && len(data) == 0 {
			return nil, io.EOF
		}
		if n := c.find(data); n > 0 {
			c.start += n
			c.pos = c.p.Min
			c.h = 0
			return data[:n:n], nil
		}
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
}

// find returns the length of the chunk at the start of data, or 0 if it
// cannot be decided without more input. It records how far it has hashed in
// c.pos and c.h so that hashing resumes where it stopped once more input is
// available.
func (c *Chunker) find(data []byte) int {
	final := c.eof
	if len(data) >= c.p.Max {
		data = data[:c.p.Max]
		final = true
	}
	if len(data) <= c.pos {
		if final {
			return len(data) // only at EOF: the tail is shorter than Min
		}
		return 0
	}
	if final && IsZero(data) {
		// A run of zeros (a sparse file's hole) is cut where hashing it
		// would cut it, without hashing it: ten times faster.
		return min(len(data), c.zeroCut())
	}
	i, h := c.pos, c.h
	if i < c.p.Avg {
		d := data
		if len(d) > c.p.Avg {
			d = d[:c.p.Avg]
		}
		var cut int
		if cut, h = roll(d, i, h, c.strict); cut > 0 {
			return cut
		}
		i = len(d)
	}
	if i < len(data) {
		var cut int
		if cut, h = roll(data, i, h, c.loose); cut > 0 {
			return cut
		}
	}
	if final {
		return len(data)
	}
	c.pos, c.h = len(data), h
	return 0
}

// zeroCut is the length of a chunk cut from Max or more zero bytes: where
// hashing them gives the first cut point, or Max.
func (c *Chunker) zeroCut() int {
	if c.zcut == 0 {
		c.zcut = c.p.ZeroCut()
	}
	return c.zcut
}

// ZeroCut is the length of every chunk cut from inside a run of at least
// Max zero bytes (a hole): where hashing the zeros gives the first cut
// point, or Max. Only such chunks and a file's last one can be all zeros.
func (p Params) ZeroCut() int {
	strict, loose := p.masks()
	z := make([]byte, p.Max)
	if cut, h := roll(z[:p.Avg], p.Min, 0, strict); cut > 0 {
		return cut
	} else if cut, _ := roll(z, p.Avg, h, loose); cut > 0 {
		return cut
	}
	return p.Max
}

// zeroPage is compared against by IsZero.
var zeroPage [16 << 10]byte

// IsZero reports whether every byte of b is zero. It stops at the first
// block that is not, so it costs next to nothing on data.
func IsZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroPage))
		if string(b[:n]) != string(zeroPage[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// roll feeds d[i:] into the gear hash h and returns the chunk length at the
// first cut point, where the hash has no bits in common with mask, together
// with the hash. If there is no cut point the length is 0.
//
// The gear hash is h' = h<<1 + gear[b]. The loop consumes two bytes per
// iteration with one shift instead of two, as proposed in the FastCDC 2020
// paper: h<<2 + gearShifted[b0] is exactly the one-byte hash after b0,
// shifted left by one, so it is tested against mask<<1 (mask never uses bit
// 63, so no information is lost); adding gear[b1] then gives the hash after
// b1. The result is bit-for-bit that of the one-byte-at-a-time loop. The
// loop is further unrolled to eight bytes per iteration.
func roll(d []byte, i int, h, mask uint64) (int, uint64) {
	g, g2 := &gear, &gearShifted
	mask2 := mask << 1
	p := d[i:]
	// The position of p[k] in d is len(d)-len(p)+k; cut points are rare, so
	// it is only computed when one is found.
	for len(p) >= 8 {
		h = h<<2 + g2[p[0]]
		if h&mask2 == 0 {
			return len(d) - len(p) + 1, h
		}
		h += g[p[1]]
		if h&mask == 0 {
			return len(d) - len(p) + 2, h
		}
		h = h<<2 + g2[p[2]]
		if h&mask2 == 0 {
			return len(d) - len(p) + 3, h
		}
		h += g[p[3]]
		if h&mask == 0 {
			return len(d) - len(p) + 4, h
		}
		h = h<<2 + g2[p[4]]
		if h&mask2 == 0 {
			return len(d) - len(p) + 5, h
		}
		h += g[p[5]]
		if h&mask == 0 {
			return len(d) - len(p) + 6, h
		}
		h = h<<2 + g2[p[6]]
		if h&mask2 == 0 {
			return len(d) - len(p) + 7, h
		}
		h += g[p[7]]
		if h&mask == 0 {
			return len(d) - len(p) + 8, h
		}
		p = p[8:]
	}
	for len(p) >= 2 {
		h = h<<2 + g2[p[0]]
		if h&mask2 == 0 {
			return len(d) - len(p) + 1, h
		}
		h += g[p[1]]
		if h&mask == 0 {
			return len(d) - len(p) + 2, h
		}
		p = p[2:]
	}
	if len(p) == 1 {
		h = h<<1 + g[p[0]]
		if h&mask == 0 {
			return len(d), h
		}
	}
	return 0, h
}

// fill reads more input into the buffer, making room first by growing or
// compacting it. It returns a non-nil error only if no data could be added
// and r has not reached EOF.
func (c *Chunker) fill() error {
	if c.err != nil {
		return c.err
	}
	if c.end == len(c.buf) {
		live := c.end - c.start
		if len(c.buf) < c.maxBufferLen && live*2 >= len(c.buf) {
			n := min(max(2*len(c.buf), initialBuf), c.maxBufferLen)
			nb := make([]byte, n)
			copy(nb, c.buf[c.start:c.end])
			c.buf = nb
		} else {
			// live < Max here (otherwise find would have cut at Max), so
			// with a full-size buffer at least Max bytes become free.
			copy(c.buf, c.buf[c.start:c.end])
		}
		c.start, c.end = 0, live
	}
	for range maxEmptyReads {
		space := c.buf[c.end:]
		n, err := c.r.Read(space)
		if n < 0 || n > len(space) {
			c.err = fmt.Errorf("chunker: read: reader returned invalid count %d for a %d byte buffer", n, len(space))
			return c.err
		}
		c.end += n
		switch {
		case err == io.EOF:
			c.eof = true
			return nil
		case err != nil:
			c.err = fmt.Errorf("chunker: read: %w", err)
			if n > 0 {
				return nil // hand out what was read first; the error is sticky
			}
			return c.err
		case n > 0:
			return nil
		}
	}
	c.err = fmt.Errorf("chunker: read: %w", io.ErrNoProgress)
	return c.err
}
