package backup

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// waitArchived asks of pg_wal/archive_status what pg_backup_stop asks: .done
// is archived, .ready is not yet, neither with the segment gone is archived
// and recycled; a data directory with no archive_status fails at once.
func TestWaitArchivedReadsTheArchiveStatusAsPostgreSQLDoes(t *testing.T) {
	const seg = "000000010000000000000007"
	dataDir := t.TempDir()
	status := filepath.Join(dataDir, "pg_wal", "archive_status")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	err := waitArchived(ctx, dataDir, seg)
	if err == nil || !strings.Contains(err.Error(), seg) || !strings.Contains(err.Error(), "archive_status") {
		t.Fatalf("no archive_status: got %v, want an error naming the segment and the directory", err)
	}
	if time.Since(start) > time.Second {
		t.Errorf("no archive_status: the error took %s, want it at once", time.Since(start))
	}

	if err := os.MkdirAll(status, 0o700); err != nil {
		t.Fatal(err)
	}
	touch := func(p string) {
		t.Helper()
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	touch(filepath.Join(dataDir, "pg_wal", seg))
	touch(filepath.Join(status, seg+".ready"))
	short, cancelShort := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancelShort()
	if err := waitArchived(short, dataDir, seg); err == nil {
		t.Fatal(".ready: waitArchived returned nil, want it to wait until the context ends")
	}

	// The archiver renames .ready to .done while the backup waits.
	go func() {
		time.Sleep(50 * time.Millisecond)
		os.Rename(filepath.Join(status, seg+".ready"), filepath.Join(status, seg+".done"))
	}()
	if err := waitArchived(ctx, dataDir, seg); err != nil {
		t.Fatalf(".ready renamed to .done: %v", err)
	}

	// Archived, then recycled: neither status file nor the segment.
	os.Remove(filepath.Join(status, seg+".done"))
	os.Remove(filepath.Join(dataDir, "pg_wal", seg))
	if err := waitArchived(ctx, dataDir, seg); err != nil {
		t.Fatalf("segment recycled after archiving: %v", err)
	}

	// Neither status file but the segment still there: not archived (its
	// .ready is yet to be made).
	touch(filepath.Join(dataDir, "pg_wal", seg))
	short2, cancelShort2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancelShort2()
	if err := waitArchived(short2, dataDir, seg); err == nil {
		t.Fatal("segment present with no status file: waitArchived returned nil, want it to wait")
	}
}
