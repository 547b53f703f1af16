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
// archiveWaitMax.
const (
	archiveWaitMin = 5 * time.Millisecond
	archiveWaitMax = 100 * time.Millisecond
)

// waitArchived returns once the server whose data directory is dataDir has
// archived WAL segment seg, or when ctx ends. It asks what PostgreSQL asks
// in pg_backup_stop: a .done status file means archived, a .ready one
// means not yet, and neither, with the segment gone from pg_wal, means it
// was archived and then recycled.
func waitArchived(ctx context.Context, dataDir, seg string) error {
	status := filepath.Join(dataDir, "pg_wal", "archive_status", seg)
	for wait := archiveWaitMin; ; wait = min(2*wait, archiveWaitMax) {
		if exists(status + ".done") {
			return nil
		}
		if !exists(status+".ready") && !exists(status+".done") && !exists(filepath.Join(dataDir, "pg_wal", seg)) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// exists reports whether p exists; an error other than "not there" counts
// as there, so that waitArchived keeps waiting rather than skip the wait.
func exists(p string) bool {
	_, err := os.Stat(p)
	return !errors.Is(err, fs.ErrNotExist)
}

// notArchived is the error of a backup whose last WAL segment (seg, if
// known) was not archived within timeout.
func notArchived(id, seg string, timeout time.Duration) error {
	if seg != "" {
		seg = " (segment " + seg + ")"
	}
	return fmt.Errorf("backup %s: the WAL it needs%s was not archived within %s: check archive_command (wal-push) errors in the server log and that the object store is reachable", id, seg, timeout)
}
