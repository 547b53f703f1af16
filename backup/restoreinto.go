package backup

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/outpostdata/outpost/postgres"
)

// RestoreInto downloads a backup into srv's (empty) data directory and runs
// archive recovery with wal-fetch reading archiveConfig, then leaves the
// server stopped with srv.Password as the superuser's password. It is the
// one restore path of the single host, verification and the instance
// manager in a pod.
func RestoreInto(ctx context.Context, srv *postgres.Server, store *Store, keys Keys, opts RestoreOptions, exe, archiveConfig string, log *slog.Logger) error {
	if err := os.RemoveAll(srv.DataDir); err != nil {
		return err
	}
	opts.Store, opts.Keys, opts.DataDir = store, keys, srv.DataDir
	start := time.Now()
	m, err := Restore(ctx, opts)
	if err != nil {
		os.RemoveAll(srv.DataDir)
		return err
	}
	log.Info("base backup restored, replaying WAL", "backup", m.ID, "source", opts.Namespace+"/"+opts.Instance, "took", time.Since(start).Round(time.Millisecond))
	if err := postgres.OwnByServer(archiveConfig); err != nil {
		return err
	}
	if err := srv.Recover(ctx, RecoverySettings(exe, archiveConfig, opts.TargetTime)); err != nil {
		// A half-recovered directory must not be mistaken for an
		// initialised one on the next attempt.
		os.RemoveAll(srv.DataDir)
		return err
	}
	log.Info("recovery finished", "backup", m.ID, "took", time.Since(start).Round(time.Millisecond))
	return nil
}
