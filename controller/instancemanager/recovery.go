package instancemanager

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/outpostdata/outpost/backup"
	"github.com/outpostdata/outpost/postgres"
)

// RecoveryConfig is the ConfigMap's restore section: on the first start,
// with an empty data directory, the manager restores the source instance's
// backup instead of running initdb. Like BackupConfig it holds no secrets.
type RecoveryConfig struct {
	// Store holds the source's backups and WAL; its keys are files in
	// CredentialsDir, apart from the backup store's, since the two may be
	// different stores.
	Store          backup.StoreConfig `json:"store"`
	CredentialsDir string             `json:"credentialsDir"`
	// Namespace and Instance name the source in the object store.
	Namespace string `json:"namespace"`
	Instance  string `json:"instance"`
	// KeyFile is the mounted age identity; empty means the backups are
	// not encrypted.
	KeyFile string `json:"keyFile,omitempty"`
	// BackupID restores this backup; empty picks the newest suitable one.
	BackupID string `json:"backupID,omitempty"`
	// TargetTime stops recovery there; nil replays all archived WAL.
	TargetTime *time.Time `json:"targetTime,omitempty"`
}

func (r *RecoveryConfig) check() error {
	switch {
	case r.Store.Endpoint == "":
		return fmt.Errorf("recovery: store.endpoint is required")
	case r.Store.Bucket == "":
		return fmt.Errorf("recovery: store.bucket is required")
	case r.Namespace == "":
		return fmt.Errorf("recovery: namespace is required")
	case r.Instance == "":
		return fmt.Errorf("recovery: instance is required")
	case r.TargetTime != nil && r.TargetTime.IsZero():
		return fmt.Errorf("recovery: targetTime is the zero time; leave it out to recover to the end of WAL")
	}
	return nil
}

// restoreConfigFile is the restore.json wal-fetch reads during recovery,
// next to the data directory on the volume.
func (m *Manager) restoreConfigFile() string {
	return filepath.Join(filepath.Dir(m.opts.DataDir), "restore.json")
}

// restore creates the data directory from the backup rc names and runs
// recovery; the server is stopped afterwards. The restore happens in a
// sibling directory that is renamed into place only once recovery has
// finished, so an interrupted restore (even a killed pod) never leaves a
// directory that looks initialised: the next start begins again.
func (m *Manager) restore(ctx context.Context, rc *RecoveryConfig) error {
	ac := &backup.ArchiveConfig{Store: rc.Store, Namespace: rc.Namespace, Instance: rc.Instance, KeyFile: rc.KeyFile}
	var err error
	if ac.Store.AccessKey, ac.Store.SecretKey, err = readStoreKeys("recovery", rc.CredentialsDir); err != nil {
		return err
	}
	keys, err := ac.Keys()
	if err != nil {
		return fmt.Errorf("recovery: %w", err)
	}
	store, err := backup.Open(ctx, ac.Store)
	if err != nil {
		return fmt.Errorf("recovery: %w", err)
	}
	file := m.restoreConfigFile()
	if err := backup.WriteArchiveConfig(file, ac); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	// restore.json holds the source store's keys and serves this restore
	// only.
	defer os.Remove(file)
	exe, err := m.executable()
	if err != nil {
		return err
	}
	staging := m.server.DataDir + ".restoring"
	srv := &postgres.Server{
		DataDir: staging, ListenAddress: "127.0.0.1", Port: m.server.Port,
		Password: m.server.Password, LogFile: m.server.LogFile,
	}
	opts := backup.RestoreOptions{Namespace: rc.Namespace, Instance: rc.Instance, BackupID: rc.BackupID}
	if rc.TargetTime != nil {
		opts.TargetTime = *rc.TargetTime
	}
	if err := backup.RestoreInto(ctx, srv, store, keys, opts, exe, file, m.opts.Log); err != nil {
		os.RemoveAll(staging)
		return fmt.Errorf("restore %s/%s: %w", rc.Namespace, rc.Instance, err)
	}
	if err := os.RemoveAll(m.server.DataDir); err != nil {
		return err
	}
	if err := os.Rename(staging, m.server.DataDir); err != nil {
		return fmt.Errorf("move the restored data directory into place: %w", err)
	}
	return nil
}
