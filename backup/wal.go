package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
)

// ArchiveConfig is what wal-push and wal-fetch, run by PostgreSQL as
// archive_command and restore_command, need to know: the object store, the
// instance whose WAL it is, and the age key. The runtime writes it as a 0600
// file in the instance directory and puts its path into the commands.
type ArchiveConfig struct {
	Store     StoreConfig `json:"store"`
	Namespace string      `json:"namespace"`
	Instance  string      `json:"instance"`
	// KeyFile is an age identity file: WAL is encrypted to its recipient
	// and decrypted with it. Empty means no encryption.
	KeyFile string `json:"keyFile,omitempty"`
}

// ReadArchiveConfig reads a backup.json.
func ReadArchiveConfig(file string) (*ArchiveConfig, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("archive config: %w", err)
	}
	c := &ArchiveConfig{}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("archive config %s is damaged: %w", file, err)
	}
	if c.Namespace == "" || c.Instance == "" || c.Store.Endpoint == "" || c.Store.Bucket == "" {
		return nil, fmt.Errorf("archive config %s: namespace, instance, store.endpoint and store.bucket are required", file)
	}
	return c, nil
}

// WriteArchiveConfig writes c to file with mode 0600, atomically.
func WriteArchiveConfig(file string, c *ArchiveConfig) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(file); err == nil && bytes.Equal(old, b) {
		return nil
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

// Keys reads the configured age key, if any.
func (c *ArchiveConfig) Keys() (Keys, error) {
	if c.KeyFile == "" {
		return Keys{}, nil
	}
	return ReadKeyFile(c.KeyFile)
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// ArchiveSettings are the server settings that archive WAL with
// `outpost wal-push`; binary is the outpost executable. archive_timeout
// keeps the recovery point objective within a minute on a quiet server.
func ArchiveSettings(binary, configFile string) map[string]string {
	return map[string]string{
		"archive_mode":    "on",
		"archive_command": shellQuote(binary) + " wal-push --config " + shellQuote(configFile) + " %p",
		"archive_timeout": "60s",
		"wal_level":       "replica",
	}
}

// RecoverySettings are the settings for archive recovery with
// `outpost wal-fetch`, to the end of WAL or to target, then promotion.
func RecoverySettings(binary, configFile string, target time.Time) map[string]string {
	s := map[string]string{
		"restore_command":        shellQuote(binary) + " wal-fetch --config " + shellQuote(configFile) + " %f %p",
		"recovery_target_action": "promote",
	}
	if !target.IsZero() {
		s["recovery_target_time"] = target.UTC().Format("2006-01-02 15:04:05.999999-07:00")
		s["recovery_target_inclusive"] = "true"
	}
	return s
}

const rawSumMeta = "Raw-Sha256"

func rawSumOf(meta map[string]string) string {
	for k, v := range meta {
		if strings.EqualFold(k, rawSumMeta) || strings.EqualFold(k, "X-Amz-Meta-"+rawSumMeta) {
			return v
		}
	}
	return ""
}

// ErrSegmentConflict is a WAL segment already archived under the same name
// with different contents.
var ErrSegmentConflict = errors.New("a different WAL segment is already archived under this name")

// PushWAL archives one WAL file. It returns nil only once the object store
// holds the segment, checked by SHA-256. Pushing the same segment again is
// harmless; a different one under the same name is ErrSegmentConflict.
func PushWAL(ctx context.Context, s *Store, keys Keys, namespace, instance, file string) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("wal-push: %w", err)
	}
	name := filepath.Base(file)
	key := walKey(namespace, instance, name)
	sum := sha256Hex(raw)
	if info, err := s.client.StatObject(ctx, s.bucket, s.key(key), minio.StatObjectOptions{}); err == nil {
		if stored := rawSumOf(info.UserMetadata); stored != sum {
			return fmt.Errorf("wal-push %s to %s: %w (stored sha256 %s, this file %s): two servers may be archiving into the same place", name, s, ErrSegmentConflict, stored, sum)
		}
		return nil
	} else if !isNotFound(err) {
		return fmt.Errorf("wal-push %s: object store %s: %w", name, s, err)
	}
	sealed := new(bytes.Buffer)
	if err := keys.seal(sealed, raw); err != nil {
		return fmt.Errorf("wal-push %s: %w", name, err)
	}
	_, err = s.client.PutObject(ctx, s.bucket, s.key(key), sealed, int64(sealed.Len()), minio.PutObjectOptions{
		ContentType:  "application/octet-stream",
		UserMetadata: map[string]string{rawSumMeta: sum},
		Checksum:     minio.ChecksumSHA256,
	})
	if err != nil {
		return fmt.Errorf("wal-push %s to %s: %w", name, s, err)
	}
	info, err := s.client.StatObject(ctx, s.bucket, s.key(key), minio.StatObjectOptions{})
	if err != nil {
		return fmt.Errorf("wal-push %s: check what %s stored: %w", name, s, err)
	}
	if rawSumOf(info.UserMetadata) != sum {
		return fmt.Errorf("wal-push %s to %s: %w (written concurrently by another server)", name, s, ErrSegmentConflict)
	}
	return nil
}

// FetchWAL restores one archived WAL file to dest. A segment that is not
// archived is ErrNotFound, which tells PostgreSQL that recovery reached
// the end of the archive.
func FetchWAL(ctx context.Context, s *Store, keys Keys, namespace, instance, name, dest string) error {
	key := walKey(namespace, instance, name)
	obj, err := s.client.GetObject(ctx, s.bucket, s.key(key), minio.GetObjectOptions{})
	if err != nil {
		return fmt.Errorf("wal-fetch %s from %s: %w", name, s, err)
	}
	defer obj.Close()
	stored, err := io.ReadAll(obj)
	if err != nil {
		if isNotFound(err) {
			return fmt.Errorf("wal-fetch %s: %w", name, ErrNotFound)
		}
		return fmt.Errorf("wal-fetch %s from %s: %w", name, s, err)
	}
	info, err := obj.Stat()
	if err != nil {
		return fmt.Errorf("wal-fetch %s from %s: %w", name, s, err)
	}
	raw, err := keys.open(key, stored)
	if err != nil {
		return err
	}
	if want := rawSumOf(info.UserMetadata); want != "" && want != sha256Hex(raw) {
		return fmt.Errorf("wal-fetch %s: checksum mismatch: the archived segment is damaged", name)
	}
	tmp := dest + ".outpost-tmp"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return fmt.Errorf("wal-fetch %s: %w", name, err)
	}
	return os.Rename(tmp, dest)
}
