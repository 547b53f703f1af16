package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// pg_backup_stop(true) waits for the backup's last WAL segment to be
// archived by looking at pg_wal/archive_status, but it sleeps a whole
// second between looks, and the archiver has not finished before the first
// one: every backup paid about a second for nothing. Create stops the
// backup without the wait and watches the same files itself, as often as
// archiveWaitMax: a look is three stat calls, so looking every 10 ms costs
// nothing while the backup's caller waits at most that long past the
// archiver.
const (
	archiveWaitMin = time.Millisecond
	archiveWaitMax = 10 * time.Millisecond
)

// waitArchived returns once the server whose data directory is dataDir has
// archived WAL segment seg, or when ctx ends. A data directory whose
// pg_wal/archive_status cannot be read is an error at once: nothing there
// could ever say the segment is archived.
func waitArchived(ctx context.Context, dataDir, seg string) error {
	status := filepath.Join(dataDir, "pg_wal", "archive_status")
	if _, err := os.Stat(status); err != nil {
		return fmt.Errorf("see whether WAL segment %s is archived: %w", seg, err)
	}
	for wait := archiveWaitMin; !archived(dataDir, seg); wait = min(2*wait, archiveWaitMax) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
	return nil
}

// archived asks what PostgreSQL asks in pg_backup_stop: a .done status file
// means archived, a .ready one means not yet, and neither, with the
// segment gone from pg_wal, means it was archived and then recycled. A file
// that cannot be looked at counts as not archived.
func archived(dataDir, seg string) bool {
	wal := filepath.Join(dataDir, "pg_wal")
	status := filepath.Join(wal, "archive_status", seg)
	if there(status+".done") == nil {
		return true
	}
	if !errors.Is(there(status+".ready"), fs.ErrNotExist) {
		return false
	}
	// The archiver may have just renamed .ready to .done.
	if there(status+".done") == nil {
		return true
	}
	return errors.Is(there(filepath.Join(wal, seg)), fs.ErrNotExist)
}

func there(p string) error {
	_, err := os.Stat(p)
	return err
}

// notArchived is the error of a backup whose last WAL segment (seg, if
// known) was not archived within timeout.
func notArchived(id, seg string, timeout time.Duration) error {
	if seg != "" {
		seg = " (segment " + seg + ")"
	}
	return fmt.Errorf("backup %s: the WAL it needs%s was not archived within %s: check archive_command (wal-push) errors in the server log and that the object store is reachable", id, seg, timeout)
}
