package instancemanager

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/outpostdata/outpost/backup"
	"github.com/outpostdata/outpost/controller/archiving"
	"github.com/outpostdata/outpost/postgres"
)

// Environment variables of the pod for backups: the bearer token of
// POST /backup (from the instance's Secret) and the object store's keys
// (from the ObjectStore's credentials Secret).
const (
	EnvBackupToken = "OUTPOST_BACKUP_TOKEN"
	EnvAccessKey   = "AWS_ACCESS_KEY_ID"
	EnvSecretKey   = "AWS_SECRET_ACCESS_KEY"
)

// BackupConfig is the backup part of the ConfigMap. It holds no secrets:
// the keys come from the environment and the age key and CA from mounted
// Secrets, by path.
type BackupConfig struct {
	// Store is where base backups and WAL go; its AccessKey and SecretKey
	// are empty here.
	Store backup.StoreConfig `json:"store"`
	// Namespace and Instance name the instance in the object store.
	Namespace string `json:"namespace"`
	Instance  string `json:"instance"`
	// KeyFile is the mounted age identity; empty means no encryption.
	KeyFile string `json:"keyFile,omitempty"`
}

// BackupResult is the answer of POST /backup.
type BackupResult struct {
	Manifest *backup.Manifest `json:"manifest"`
	Location string           `json:"location"`
}

// archiveConfigFile is the backup.json wal-push reads, next to the data
// directory on the volume (the root filesystem is read-only).
func (m *Manager) archiveConfigFile() string {
	return filepath.Join(filepath.Dir(m.opts.DataDir), "backup.json")
}

// archiveConfig completes c with the keys from the environment.
func archiveConfig(c *BackupConfig) (*backup.ArchiveConfig, error) {
	ac := &backup.ArchiveConfig{Store: c.Store, Namespace: c.Namespace, Instance: c.Instance, KeyFile: c.KeyFile}
	ac.Store.AccessKey, ac.Store.SecretKey = os.Getenv(EnvAccessKey), os.Getenv(EnvSecretKey)
	if ac.Store.AccessKey == "" || ac.Store.SecretKey == "" {
		return nil, fmt.Errorf("backup: %s and %s must be set (the pod takes them from the ObjectStore's credentials Secret)", EnvAccessKey, EnvSecretKey)
	}
	return ac, nil
}

// configureArchiving writes backup.json and sets archive_command to
// `outpost wal-push` when the configuration has a backup section; without
// one, archive_mode stays on with a command that stores nothing, so adding
// a backup later reloads instead of restarting (archiving.IdleSettings).
func (m *Manager) configureArchiving(cfg Config) error {
	if cfg.Backup == nil {
		m.server.ManagedSettings = archiving.IdleSettings()
		return nil
	}
	ac, err := archiveConfig(cfg.Backup)
	if err != nil {
		return err
	}
	file := m.archiveConfigFile()
	if err := backup.WriteArchiveConfig(file, ac); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	if err := postgres.OwnByServer(file); err != nil {
		return err
	}
	exe, err := m.executable()
	if err != nil {
		return err
	}
	m.server.ManagedSettings = backup.ArchiveSettings(exe, file)
	return nil
}

// executable is the outpost binary PostgreSQL runs for wal-push and
// wal-fetch.
func (m *Manager) executable() (string, error) {
	if m.opts.Executable != "" {
		return m.opts.Executable, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the outpost executable for archive_command and restore_command: %w", err)
	}
	return exe, nil
}

// authorized checks "Authorization: Bearer TOKEN" in constant time. Hashing
// both sides first makes the comparison's time independent of the token's
// length too.
func (m *Manager) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || m.opts.BackupToken == "" {
		return false
	}
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(m.opts.BackupToken))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// serveBackup takes a base backup now and answers with its manifest once it
// is completed. One backup runs at a time; a second request gets 409.
func (m *Manager) serveBackup(w http.ResponseWriter, r *http.Request) {
	if !m.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="outpost-instance"`)
		http.Error(w, "a bearer token from the instance's Secret is required", http.StatusUnauthorized)
		return
	}
	if !m.backupMu.TryLock() {
		http.Error(w, "a backup of this instance is already running", http.StatusConflict)
		return
	}
	defer m.backupMu.Unlock()
	res, err := m.runBackup(r.Context())
	var notConfigured *backupNotConfigured
	switch {
	case errors.As(err, &notConfigured):
		http.Error(w, err.Error(), http.StatusPreconditionFailed)
		return
	case err != nil:
		m.opts.Log.Error("backup failed", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(res)
}

type backupNotConfigured struct{}

func (*backupNotConfigured) Error() string {
	return "this instance has no spec.backup: add an object store to back it up"
}

func (m *Manager) runBackup(ctx context.Context) (*BackupResult, error) {
	cfg, err := ReadConfig(m.opts.ConfigFile)
	if err != nil {
		return nil, err
	}
	if cfg.Backup == nil {
		return nil, &backupNotConfigured{}
	}
	ac, err := archiveConfig(cfg.Backup)
	if err != nil {
		return nil, err
	}
	keys, err := ac.Keys()
	if err != nil {
		return nil, err
	}
	store, err := backup.Open(ctx, ac.Store)
	if err != nil {
		return nil, err
	}
	man, err := backup.Create(ctx, backup.CreateOptions{
		Store: store, Namespace: ac.Namespace, Instance: ac.Instance,
		ConnString: m.server.URL("postgres"), DataDir: m.server.DataDir, Keys: keys,
	})
	if err != nil {
		return nil, err
	}
	m.opts.Log.Info("backup completed", "backup", man.ID, "bytes", man.SourceBytes, "stored", man.StoredBytes)
	return &BackupResult{Manifest: man, Location: backup.Location(store, man)}, nil
}
