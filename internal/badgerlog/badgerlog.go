// Package badgerlog adapts a *slog.Logger to the four-method logger badger
// expects, for the two packages that keep a badger database (blockstore and
// namespace). badger's Info messages are routine chatter (compactions,
// memtable flushes, "Lifetime L0 stalled"), so they are logged at Debug.
package badgerlog

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// Logger implements badger.Logger on top of slog.
type Logger struct{ l *slog.Logger }

// New returns a badger logger writing to l (nil discards).
func New(l *slog.Logger) Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return Logger{l}
}

func (b Logger) logf(level slog.Level, format string, args ...any) {
	ctx := context.Background()
	if !b.l.Enabled(ctx, level) {
		return
	}
	b.l.Log(ctx, level, strings.TrimRight(fmt.Sprintf(format, args...), "\n"), "component", "badger")
}

// Errorf logs at Error.
func (b Logger) Errorf(format string, args ...any) { b.logf(slog.LevelError, format, args...) }

// Warningf logs at Warn.
func (b Logger) Warningf(format string, args ...any) { b.logf(slog.LevelWarn, format, args...) }

// Infof logs at Debug: badger's info is routine.
func (b Logger) Infof(format string, args ...any) { b.logf(slog.LevelDebug, format, args...) }

// Debugf logs at Debug.
func (b Logger) Debugf(format string, args ...any) { b.logf(slog.LevelDebug, format, args...) }
