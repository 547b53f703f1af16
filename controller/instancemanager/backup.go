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

// EnvBackupToken is the environment variable with the bearer token of
// POST /backup (from the instance's backup token Secret).
const EnvBackupToken = "OUTPOST_BACKUP_TOKEN"

// Files of an object store's keys in CredentialsDir: the keys of its
// credentials Secret, mounted.
const (
	AccessKeyFile = "accessKeyID"
	SecretKeyFile = "secretAccessKey"
)

// BackupConfig is the backup part of the ConfigMap. It holds no secrets:
// the keys, the age key and the CA come from mounted Secrets, by path. The
// keys are never environment variables, which postgres' processes would
// see.
type BackupConfig struct {
	// Store is where base backups and WAL go; its AccessKey and SecretKey
	// are empty here.
	Store backup.StoreConfig `json:"store"`
	// Namespace and Instance name the instance in the object store.
	Namespace string `json:"namespace"`
	Instance  string `json:"instance"`
	// KeyFile is the mounted age identity; empty means no encryption.
	KeyFile string `json:"keyFile,omitempty"`
	// CredentialsDir holds the store's keys as AccessKeyFile and
	// SecretKeyFile.
	CredentialsDir string `json:"credentialsDir"`
}

// readStoreKeys reads an object store's keys from the files in dir.
func readStoreKeys(field, dir string) (accessKey, secretKey string, err error) {
	if dir == "" {
		return "", "", fmt.Errorf("%s.credentialsDir: not set; the object store's keys are mounted there", field)
	}
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err == nil && len(strings.TrimSpace(string(b))) == 0 {
			err = errors.New("the file is empty")
		}
		if err != nil {
			return "", fmt.Errorf("%s: the object store's key %s: %w", field, filepath.Join(dir, name), err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if accessKey, err = read(AccessKeyFile); err != nil {
		return "", "", err
	}
	secretKey, err = read(SecretKeyFile)
	return accessKey, secretKey, err
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

// archiveConfig completes c with the keys from their files.
func archiveConfig(c *BackupConfig) (*backup.ArchiveConfig, error) {
	ac := &backup.ArchiveConfig{Store: c.Store, Namespace: c.Namespace, Instance: c.Instance, KeyFile: c.KeyFile}
	var err error
	if ac.Store.AccessKey, ac.Store.SecretKey, err = readStoreKeys("backup", c.CredentialsDir); err != nil {
		return nil, err
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
	// ?type=incremental asks for an incremental backup; Create checks it.
	res, err := m.runBackup(r.Context(), r.URL.Query().Get("type"))
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

func (m *Manager) runBackup(ctx context.Context, typ string) (*BackupResult, error) {
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
		Type: typ,
	})
	if err != nil {
		return nil, err
	}
	m.opts.Log.Info("backup completed", "backup", man.ID, "bytes", man.SourceBytes, "stored", man.StoredBytes)
	return &BackupResult{Manifest: man, Location: backup.Location(store, man)}, nil
}
