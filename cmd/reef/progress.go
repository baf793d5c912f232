package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progress draws a one-line bar on a terminal: bytes done, total, rate.
// It draws at most five times a second, and nothing when disabled.
type progress struct {
	mu      sync.Mutex // guards the fields below
	w       io.Writer
	label   string
	total   int64 // < 0: unknown
	done    int64
	start   time.Time
	last    time.Time
	enabled bool
}

func newProgress(w io.Writer, enabled bool, label string, total int64) *progress {
	return &progress{w: w, enabled: enabled, label: label, total: total, start: time.Now()}
}

func (p *progress) setTotal(n int64) {
	p.mu.Lock()
	p.total = n
	p.mu.Unlock()
}

func (p *progress) add(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += int64(n)
	if p.enabled && time.Since(p.last) > 200*time.Millisecond {
		p.last = time.Now()
		p.draw()
	}
}

func (p *progress) draw() {
	secs := time.Since(p.start).Seconds()
	rate := ""
	if secs > 0 {
		rate = humanBytes(int64(float64(p.done)/secs)) + "/s"
	}
	if p.total > 0 {
		frac := min(float64(p.done)/float64(p.total), 1)
		const width = 30
		fill := int(frac * width)
		fmt.Fprintf(p.w, "\r%s [%s%s] %5.1f%% %s / %s %s  ", p.label, strings.Repeat("=", fill), strings.Repeat(" ", width-fill),
			frac*100, humanBytes(p.done), humanBytes(p.total), rate)
	} else {
		fmt.Fprintf(p.w, "\r%s %s %s  ", p.label, humanBytes(p.done), rate)
	}
}

// finish draws the final state and ends the line.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.enabled {
		p.draw()
		fmt.Fprintln(p.w)
	}
}

// reader counts what passes through r.
func (p *progress) reader(r io.Reader) io.Reader { return progressReader{r, p} }

// writer counts what passes through w.
func (p *progress) writer(w io.Writer) io.Writer { return progressWriter{w, p} }

type progressReader struct {
	r io.Reader
	p *progress
}

func (r progressReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.p.add(n)
	return n, err
}

type progressWriter struct {
	w io.Writer
	p *progress
}

func (w progressWriter) Write(b []byte) (int, error) {
	n, err := w.w.Write(b)
	w.p.add(n)
	return n, err
}
