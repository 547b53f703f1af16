package backup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"
)

// manifestName is the object written last in a base backup's directory: a
// backup without it never completed.
const manifestName = "manifest.json"

// Manifest describes one completed base backup: what is needed to restore it
// and the checksum of every object it consists of.
type Manifest struct {
	Format    int    `json:"format"`
	ID        string `json:"id"`
	Namespace string `json:"namespace"`
	Instance  string `json:"instance"`
	// StartTime and StopTime are the server's clock at pg_backup_start and
	// pg_backup_stop. A restore cannot target a time before StopTime.
	StartTime time.Time `json:"startTime"`
	StopTime  time.Time `json:"stopTime"`
	StartLSN  string    `json:"startLSN"`
	StopLSN   string    `json:"stopLSN"`
	Timeline  uint32    `json:"timeline"`
	// StartWAL is the first WAL segment a restore needs; WAL before it
	// belongs to older backups only.
	StartWAL         string `json:"startWAL"`
	SystemIdentifier string `json:"systemIdentifier"`
	PGVersion        int    `json:"pgVersion"`
	Encrypted        bool   `json:"encrypted"`
	// SourceBytes is the size of the data directory read; StoredBytes what
	// the objects take after compression and encryption.
	SourceBytes int64 `json:"sourceBytes"`
	StoredBytes int64 `json:"storedBytes"`
	// BackupLabel and TablespaceMap are what pg_backup_stop returned; a
	// restore writes them into the data directory.
	BackupLabel   string `json:"backupLabel"`
	TablespaceMap string `json:"tablespaceMap,omitempty"`
	// Objects, in order: their concatenated contents, decrypted and
	// decompressed, are one tar stream of the data directory.
	Objects []Object `json:"objects"`
}

// Object is one stored object of a backup.
type Object struct {
	// Name within the backup's directory.
	Name string `json:"name"`
	// Size and SHA256 of the stored bytes.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// RawSize before compression.
	RawSize int64 `json:"rawSize"`
}

// Location is where a backup is: bucket and key prefix.
func Location(s *Store, m *Manifest) string {
	return s.bucket + "/" + s.key(baseDir(m.Namespace, m.Instance, m.ID)) + "/"
}

// newBackupID is sortable by time and unique enough that two backups in the
// same second do not collide.
func newBackupID(t time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return t.UTC().Format("20060102T150405.000000Z") + "-" + hex.EncodeToString(b[:])
}

// BackupInfo is a backup as the catalog sees it: completed ones carry their
// manifest; incomplete ones (running, or interrupted) only their ID.
type BackupInfo struct {
	ID        string    `json:"id"`
	Completed bool      `json:"completed"`
	Manifest  *Manifest `json:"manifest,omitempty"`
	// ManifestSHA256 is the checksum of manifest.json as stored.
	ManifestSHA256 string `json:"manifestSHA256,omitempty"`
	// Modified is the newest object's time, for incomplete backups.
	Modified time.Time `json:"modified"`
}

// List returns the instance's backups, oldest first. Only those with a
// manifest are completed.
func List(ctx context.Context, s *Store, namespace, instance string) ([]BackupInfo, error) {
	objs, err := s.list(ctx, path.Join(instanceDir(namespace, instance), "base"), true)
	if err != nil {
		return nil, err
	}
	byID := map[string]*BackupInfo{}
	for _, o := range objs {
		rest := strings.TrimPrefix(o.Key, path.Join(instanceDir(namespace, instance), "base")+"/")
		id, name, ok := strings.Cut(rest, "/")
		if !ok {
			continue
		}
		bi := byID[id]
		if bi == nil {
			bi = &BackupInfo{ID: id}
			byID[id] = bi
		}
		if o.Modified.After(bi.Modified) {
			bi.Modified = o.Modified
		}
		if name == manifestName {
			bi.Completed = true
		}
	}
	var out []BackupInfo
	for _, bi := range byID {
		if bi.Completed {
			m, sum, err := ReadManifest(ctx, s, namespace, instance, bi.ID)
			if err != nil {
				return nil, err
			}
			bi.Manifest, bi.ManifestSHA256 = m, sum
		}
		out = append(out, *bi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// ReadManifest reads a completed backup's manifest and its checksum.
func ReadManifest(ctx context.Context, s *Store, namespace, instance, id string) (*Manifest, string, error) {
	b, err := s.get(ctx, path.Join(baseDir(namespace, instance, id), manifestName))
	if errors.Is(err, ErrNotFound) {
		return nil, "", fmt.Errorf("backup %s of %s/%s in %s is not completed (it has no manifest) or does not exist", id, namespace, instance, s)
	}
	if err != nil {
		return nil, "", err
	}
	m := &Manifest{}
	if err := json.Unmarshal(b, m); err != nil {
		return nil, "", fmt.Errorf("backup %s: manifest.json is damaged: %w", id, err)
	}
	return m, sha256Hex(b), nil
}
