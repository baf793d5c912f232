package fs

import (
	"reflect"
	"sync"
	"time"

	"bazil.org/fuse"
)

// opWatch turns bazil's debug messages into one call of Config.ObserveOp
// per answered request: the operation ("Lookup", "Getxattr", ...), the
// errno name ("" on success) and the time from the request's arrival to
// its answer. bazil exposes requests and answers only through its Debug
// hook; the answer's fields are read by name, so a renamed field in a
// future bazil makes the metrics go quiet rather than break the mount.
type opWatch struct {
	observe func(op, errno string, d time.Duration)
	mu      sync.Mutex
	start   map[fuse.RequestID]time.Time
}

func newOpWatch(observe func(op, errno string, d time.Duration)) *opWatch {
	return &opWatch{observe: observe, start: make(map[fuse.RequestID]time.Time)}
}

func (w *opWatch) debug(msg interface{}) {
	v := reflect.ValueOf(msg)
	if v.Kind() != reflect.Struct {
		return
	}
	switch v.Type().Name() {
	case "request":
		r, ok := v.FieldByName("In").Interface().(fuse.Request)
		if !ok {
			return
		}
		w.mu.Lock()
		w.start[r.Hdr().ID] = time.Now()
		w.mu.Unlock()
	case "response":
		op, ok1 := field[string](v, "Op")
		errno, ok2 := field[string](v, "Errno")
		hdr := v.FieldByName("Request")
		if !ok1 || !ok2 || !hdr.IsValid() {
			return
		}
		id, ok := field[fuse.RequestID](hdr, "ID")
		if !ok {
			return
		}
		w.mu.Lock()
		t0, found := w.start[id]
		delete(w.start, id)
		w.mu.Unlock()
		if found {
			w.observe(op, errno, time.Since(t0))
		}
	}
}

func field[T any](v reflect.Value, name string) (T, bool) {
	var zero T
	f := v.FieldByName(name)
	if !f.IsValid() || !f.CanInterface() {
		return zero, false
	}
	t, ok := f.Interface().(T)
	return t, ok
}
