package localruntime

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLastReplayedIsTheLastCompletedTransactionRecoveryLogged(t *testing.T) {
	log := filepath.Join(t.TempDir(), "postgres.log")
	// As PostgreSQL 15 writes it when archive recovery ends.
	content := `2026-11-30 09:20:01.100 UTC [41] LOG:  starting archive recovery
2026-11-30 09:20:02.200 UTC [41] LOG:  redo done at 0/3000100 system usage: CPU: user: 0.00 s
2026-11-30 09:20:02.201 UTC [41] LOG:  last completed transaction was at log time 2026-11-30 09:14:59.123456+00
2026-11-30 09:20:02.300 UTC [41] LOG:  archive recovery complete
`
	if err := os.WriteFile(log, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 11, 30, 9, 14, 59, 123456000, time.UTC)
	if got := lastReplayed(log); !got.Equal(want) {
		t.Fatalf("lastReplayed = %s, want %s", got, want)
	}
	if got := lastReplayed(filepath.Join(t.TempDir(), "missing.log")); !got.IsZero() {
		t.Fatalf("no log: %s, want zero", got)
	}
}
