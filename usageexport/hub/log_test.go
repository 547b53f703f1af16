package hub_test

import (
	"io"
	"log/slog"
)

func nilLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
