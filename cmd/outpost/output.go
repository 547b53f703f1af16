package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/outpostdata/outpost/vectorstore"
)

// This file holds everything about how commands talk to people: JSON
// output, terminal detection, progress lines and the logger, so that every
// command formats, logs and decides "is a person watching?" the same way.

// printJSON writes v as indented JSON, the -o json of every command.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newLogger is the log of a long-running command: text lines on the
// command's standard error from level (a --log-level value: debug, info,
// warn or error) up.
func newLogger(cmd *cobra.Command, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: l})), nil
}

// isTerminal reports whether w is a terminal: progress is for people, and
// stays out of scripts' output and logs.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressTo reports bytes done on a terminal, at most twice a second, and
// is nil (no progress) otherwise.
func progressTo(w io.Writer, verb string) func(int64) {
	if !isTerminal(w) {
		return nil
	}
	start, last := time.Now(), time.Time{}
	return func(n int64) {
		if time.Since(last) < 500*time.Millisecond {
			return
		}
		last = time.Now()
		fmt.Fprintf(w, "\r%s %d MB (%.0f MB/s)  ", verb, n>>20, float64(n)/1e6/time.Since(start).Seconds())
	}
}

// ingestProgressTo reports an ingest's phase and rows on a terminal; done
// ends the progress line. Both are no-ops when w is not a terminal.
func ingestProgressTo(w io.Writer) (progress func(vectorstore.IngestProgress), done func()) {
	if !isTerminal(w) {
		return nil, func() {}
	}
	start := time.Now()
	return func(p vectorstore.IngestProgress) {
			fmt.Fprintf(w, "\r%-9s %d rows  %s   ", p.Phase, p.Rows, time.Since(start).Round(time.Second))
		}, func() {
			fmt.Fprintln(w)
		}
}

// abbreviate shortens a value quoted back in an error message.
func abbreviate(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}

// humanBytes writes n in binary units, as "12.3 MiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// dash stands in for an empty table cell.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
