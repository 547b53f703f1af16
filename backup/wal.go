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
	// KeyFile is an age key file: identities (AGE-SECRET-KEY-1...) to
	// decrypt, or only recipients (age1...) when the file serves
	// archiving. Empty means no encryption, unless Recipient is set.
	KeyFile string `json:"keyFile,omitempty"`
	// Recipient is an age public key (age1...) WAL is encrypted to. It is
	// all wal-push needs: the server's account never has to read the
	// identity to archive.
	Recipient string `json:"recipient,omitempty"`
	// Identities are age identities inline, written by RestoreInto into the
	// configuration of one restore (the server's account runs wal-fetch)
	// and removed when it ends.
	Identities []string `json:"identities,omitempty"`
	// SystemIdentifier is the cluster whose WAL wal-fetch reads; RestoreInto
	// sets it from the restored backup. wal-push reads it from the server's
	// control file instead.
	SystemIdentifier string `json:"systemIdentifier,omitempty"`
	// FetchAttempts and FetchAttemptTimeout bound wal-fetch's retries of
	// transient errors (an unreachable or hanging store); 0 means 4
	// attempts of at most 60 s each.
	FetchAttempts       int      `json:"fetchAttempts,omitempty"`
	FetchAttemptTimeout Duration `json:"fetchAttemptTimeout,omitempty"`
}

// Duration is a time.Duration written as "30s" in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
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

// Keys reads the configured age key, if any: inline identities, the key
// file, or the recipient alone.
func (c *ArchiveConfig) Keys() (Keys, error) {
	switch {
	case len(c.Identities) > 0:
		return ParseKeys(strings.Join(c.Identities, "\n"))
	case c.KeyFile != "":
		return ReadKeyFile(c.KeyFile)
	case c.Recipient != "":
		return ParseKeys(c.Recipient)
	}
	return Keys{}, nil
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

// ErrDamaged is an archived object that cannot be trusted: its checksum
// does not match, its checksum is missing where one is required, it is not
// encrypted although a key is configured, or it does not decrypt.
// Retrying does not help.
var ErrDamaged = errors.New("the archived object is damaged or not what was written")

// PushWAL archives one WAL file of the cluster whose data directory holds
// it (file is pg_wal/NAME, as archive_command's %p). It returns nil only once
// the object store holds the segment, checked by SHA-256. The upload is a
// conditional write (If-None-Match: *), so two writers can never replace
// each other's segment: pushing the same segment again is harmless; a
// different one under the same name is ErrSegmentConflict.
func PushWAL(ctx context.Context, s *Store, keys Keys, namespace, instance, file string) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("wal-push: %w", err)
	}
	name := filepath.Base(file)
	sysid, ok := segmentSysid(raw)
	if !ok || !isSegmentName(name) {
		if sysid, err = controlFileSysid(file); err != nil {
			return fmt.Errorf("wal-push %s: %w", name, err)
		}
	}
	key := s.key(walKey(namespace, instance, sysid, name))
	sum := sha256Hex(raw)
	sealed := new(bytes.Buffer)
	if err := keys.seal(sealed, raw); err != nil {
		return fmt.Errorf("wal-push %s: %w", name, err)
	}
	opts := minio.PutObjectOptions{
		ContentType:  "application/octet-stream",
		UserMetadata: map[string]string{rawSumMeta: sum},
		Checksum:     minio.ChecksumSHA256,
		// One PUT even for an incompressible segment: the condition
		// belongs to a single request.
		DisableMultipart: true,
	}
	opts.SetMatchETagExcept("*")
	_, err = s.client.PutObject(ctx, s.bucket, key, sealed, int64(sealed.Len()), opts)
	if err == nil {
		return nil
	}
	if !isPreconditionFailed(err) {
		return fmt.Errorf("wal-push %s to %s: %w", name, s, err)
	}
	info, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return fmt.Errorf("wal-push %s: look up the segment already in %s: %w", name, s, err)
	}
	if stored := rawSumOf(info.UserMetadata); stored != sum {
		return fmt.Errorf("wal-push %s to %s: %w (stored sha256 %s, this file %s): two servers of cluster %s may be archiving into the same place", name, s, ErrSegmentConflict, stored, sum, sysid)
	}
	return nil
}

// FetchWAL restores one archived WAL file of cluster sysid to dest. A
// segment that is not archived is ErrNotFound, which tells PostgreSQL that
// recovery reached the end of the archive. A segment is looked for in the
// cluster's directory, then in the old layout, where it is accepted only if
// its header names the same cluster.
func FetchWAL(ctx context.Context, s *Store, keys Keys, namespace, instance, sysid, name, dest string) error {
	raw, err := fetchWALFrom(ctx, s, keys, walKey(namespace, instance, sysid, name), name)
	if errors.Is(err, ErrNotFound) && sysid != "" {
		raw, err = fetchWALFrom(ctx, s, keys, walKey(namespace, instance, "", name), name)
		if err == nil && isSegmentName(name) {
			if got, ok := segmentSysid(raw); ok && got != sysid {
				return fmt.Errorf("wal-fetch %s: the segment under %s %w (system identifier %s, not %s)", name, walKey(namespace, instance, "", name), ErrWrongCluster, got, sysid)
			}
		}
	}
	if err != nil {
		return err
	}
	tmp := dest + ".outpost-tmp"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return fmt.Errorf("wal-fetch %s: %w", name, err)
	}
	return os.Rename(tmp, dest)
}

// fetchWALFrom downloads, opens and checks one archived WAL file.
func fetchWALFrom(ctx context.Context, s *Store, keys Keys, key, name string) ([]byte, error) {
	obj, err := s.client.GetObject(ctx, s.bucket, s.key(key), minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("wal-fetch %s from %s: %w", name, s, err)
	}
	defer obj.Close()
	stored, err := io.ReadAll(obj)
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("wal-fetch %s: %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("wal-fetch %s from %s: %w", name, s, err)
	}
	info, err := obj.Stat()
	if err != nil {
		return nil, fmt.Errorf("wal-fetch %s from %s: %w", name, s, err)
	}
	raw, err := keys.open(key, stored)
	if err != nil {
		return nil, fmt.Errorf("wal-fetch %s: %w: %w", name, ErrDamaged, err)
	}
	want := rawSumOf(info.UserMetadata)
	if want == "" && keys.configured() {
		return nil, fmt.Errorf("wal-fetch %s: %w: %s has no %s metadata, which every segment archived with encryption carries", name, ErrDamaged, key, rawSumMeta)
	}
	if want != "" && want != sha256Hex(raw) {
		return nil, fmt.Errorf("wal-fetch %s: %w: checksum mismatch in %s", name, ErrDamaged, key)
	}
	return raw, nil
}

// pushTimeout bounds one wal-push. PostgreSQL waits for archive_command
// and archives nothing else meanwhile, so a push hanging on an unresponsive
// store must fail and be retried rather than wait forever.
const pushTimeout = 5 * time.Minute

// Push is wal-push: PushWAL with the configuration's store and key, within
// pushTimeout.
func (c *ArchiveConfig) Push(ctx context.Context, file string) error {
	ctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	keys, err := c.Keys()
	if err != nil {
		return err
	}
	s, err := Open(ctx, c.Store)
	if err != nil {
		return err
	}
	return PushWAL(ctx, s, keys, c.Namespace, c.Instance, file)
}

// Fetch is wal-fetch: FetchWAL with the configuration's store and key,
// retrying what may pass (an unreachable, refusing or hanging store) a
// bounded number of times with backoff. It returns ErrNotFound only when the
// store answered that the segment is not archived.
func (c *ArchiveConfig) Fetch(ctx context.Context, name, dest string) error {
	keys, err := c.Keys()
	if err != nil {
		return err
	}
	attempts, timeout := c.FetchAttempts, time.Duration(c.FetchAttemptTimeout)
	if attempts <= 0 {
		attempts = 4
	}
	if timeout <= 0 {
		timeout = time.Minute
	}
	var last error
	for i := range attempts {
		if i > 0 {
			select {
			case <-time.After(time.Duration(1<<(i-1)) * time.Second):
			case <-ctx.Done():
				return fmt.Errorf("wal-fetch %s: %w (after: %w)", name, ctx.Err(), last)
			}
		}
		err := c.fetchOnce(ctx, keys, timeout, name, dest)
		if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrDamaged) || errors.Is(err, ErrWrongCluster) {
			return err
		}
		last = err
	}
	// One line: PostgreSQL's log shows it next to its own message.
	return fmt.Errorf("wal-fetch %s: gave up after %d attempts; the last failed with: %w", name, attempts, last)
}

func (c *ArchiveConfig) fetchOnce(ctx context.Context, keys Keys, timeout time.Duration, name, dest string) error {
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("no answer from the object store within %s", timeout))
	defer cancel()
	s, err := Open(ctx, c.Store)
	if err == nil {
		err = FetchWAL(ctx, s, keys, c.Namespace, c.Instance, c.SystemIdentifier, name, dest)
	}
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w: %w", context.Cause(ctx), err)
	}
	return err
}
