package harness

import (
	"log/slog"
	"strings"
	"testing"
)

// Logger returns a logger that writes to the test's log, so a failing test
// shows what the code under test logged and a passing one stays quiet.
// Stop whatever logs to it before the test ends.
func Logger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Helper()
	w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
