package backup

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/outpostdata/outpost/postgres"
)

// RestoreInto downloads a backup into srv's (empty) data directory and runs
// archive recovery with wal-fetch reading archiveConfig, then leaves the
// server stopped with srv.Password as the superuser's password. It is the
// one restore path of the single host, verification and the instance
// manager in a pod, so every restore gets its checks: wal-fetch reads only
// the restored backup's cluster, and a recovery that ended before the end of
// the archived WAL is an error (ErrIncompleteRecovery), never a restored
// instance missing transactions.
//
// archiveConfig is completed for the restore: the backup's system
// identifier, and the age identities inline, since the server's account
// runs wal-fetch and need not read the key file otherwise. The identities
// are removed from it when recovery ends.
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
	archived, err := archiveEnd(ctx, store, m)
	if err != nil {
		os.RemoveAll(srv.DataDir)
		return err
	}
	ac, err := ReadArchiveConfig(archiveConfig)
	if err != nil {
		return err
	}
	ac.SystemIdentifier, ac.Identities = m.SystemIdentifier, keys.IdentityStrings()
	if err := WriteArchiveConfig(archiveConfig, ac); err != nil {
		return fmt.Errorf("write %s: %w", archiveConfig, err)
	}
	defer func() {
		ac.Identities = nil
		WriteArchiveConfig(archiveConfig, ac)
	}()
	if err := postgres.OwnByServer(archiveConfig); err != nil {
		return err
	}
	if opts.OnReplay != nil {
		opts.OnReplay()
	}
	err = srv.Recover(ctx, RecoverySettings(exe, archiveConfig, opts.TargetTime))
	if err == nil {
		err = CheckRecoveryComplete(ctx, store, m, srv.DataDir, archived)
	}
	if err != nil {
		// A half-recovered directory must not be mistaken for an
		// initialised one on the next attempt.
		os.RemoveAll(srv.DataDir)
		return err
	}
	log.Info("recovery finished", "backup", m.ID, "took", time.Since(start).Round(time.Millisecond))
	return nil
}
