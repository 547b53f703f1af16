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
	Format int    `json:"format"`
	ID     string `json:"id"`
	// Type is TypeFull or TypeIncremental; empty in manifests written
	// before incremental backups, which are all full.
	Type string `json:"type,omitempty"`
	// Parent is the backup an incremental one is on top of (full or
	// incremental, of the same cluster): a restore applies the chain from
	// its full backup up to this one.
	Parent string `json:"parent,omitempty"`
	// FullBecause says why a backup asked for as TypeIncrementalOrFull is
	// full: nothing could be its parent.
	FullBecause string `json:"fullBecause,omitempty"`
	Namespace   string `json:"namespace"`
	Instance    string `json:"instance"`
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
	// DataChecksums is the server's data_checksums setting, "on" or "off"
	// (empty in manifests written before it was kept). pg_checksums
	// rewrites every page without moving its LSN, so an incremental backup
	// across a change takes every file whole.
	DataChecksums string `json:"dataChecksums,omitempty"`
	Encrypted     bool   `json:"encrypted"`
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
	// Files and Dirs are every file (with its size when read) and
	// directory the backup saw in the data directory. An incremental
	// backup on top of this one takes files it does not list whole, and a
	// restore of an incremental truncates files to their size and removes
	// those it does not list. Manifests written before incremental backups
	// have neither, and cannot be a parent.
	Files []FileEntry `json:"files,omitempty"`
	Dirs  []string    `json:"dirs,omitempty"`
	// Databases identifies each database directory under base/ as the
	// backup found it just after it began (databases.go). An incremental backup
	// takes whole every file of a database whose identity is not its
	// parent's, or that its parent does not record.
	Databases map[string]string `json:"databases,omitempty"`
}

// Backup types.
const (
	TypeFull        = "full"
	TypeIncremental = "incremental"
	// TypeIncrementalOrFull asks for an incremental backup, and for a full
	// one when no backup can be its parent (ErrNoParent): what a schedule
	// wants, since a failed slot protects nothing until the next full one.
	// The manifest's Type says which was made, and FullBecause why.
	TypeIncrementalOrFull = "incremental-or-full"
)

// Incremental reports whether m holds only what changed since its parent.
func (m *Manifest) Incremental() bool { return m.Type == TypeIncremental }

// TypeName is m's type, "full" for manifests that predate the field.
func (m *Manifest) TypeName() string {
	if m.Type == "" {
		return TypeFull
	}
	return m.Type
}

// FileEntry is one file of the data directory as a backup saw it.
type FileEntry struct {
	// Path relative to the data directory, with slashes.
	Path string `json:"path"`
	Size int64  `json:"size"`
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
	return s.bucket + "/" + s.key(m.dir()) + "/"
}

// newBackupID is sortable by time and unique enough that two backups in the
// same second do not collide.
func newBackupID(t time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return t.UTC().Format("20060102T150405.000000Z") + "-" + hex.EncodeToString(b[:])
}

// BackupInfo is a backup as the catalog sees it: completed ones carry their
// manifest; incomplete ones (running, or interrupted) only their ID; a
// damaged one has a manifest that cannot be read, and says why.
type BackupInfo struct {
	ID        string    `json:"id"`
	Completed bool      `json:"completed"`
	Manifest  *Manifest `json:"manifest,omitempty"`
	// ManifestSHA256 is the checksum of manifest.json as stored.
	ManifestSHA256 string `json:"manifestSHA256,omitempty"`
	// Modified is the newest object's time, for incomplete backups.
	Modified time.Time `json:"modified"`
	// SystemIdentifier is the PostgreSQL cluster the backup is of; empty
	// for an incomplete backup in the old layout.
	SystemIdentifier string `json:"systemIdentifier,omitempty"`
	// Damaged says why the manifest could not be read. A damaged backup is
	// neither restored nor counted as completed; retention and
	// `outpost backup delete` can remove it.
	Damaged string `json:"damaged,omitempty"`
	// dir is where its objects are.
	dir string
}

// List returns the instance's backups of every cluster that had its name,
// oldest first. Only those with a readable manifest are completed; one
// whose manifest cannot be read is listed as damaged and does not stop the
// others from being listed.
func List(ctx context.Context, s *Store, namespace, instance string) ([]BackupInfo, error) {
	// Clusters are the directories under the instance's; "base" and "wal"
	// there are the old layout.
	top, err := s.list(ctx, instanceDir(namespace, instance), false)
	if err != nil {
		return nil, err
	}
	sysids := []string{""}
	for _, o := range top {
		name := path.Base(strings.TrimSuffix(o.Key, "/"))
		if strings.HasSuffix(o.Key, "/") && name != "base" && name != "wal" {
			sysids = append(sysids, name)
		}
	}
	var out []BackupInfo
	for _, sysid := range sysids {
		bs, err := listCluster(ctx, s, namespace, instance, sysid)
		if err != nil {
			return nil, err
		}
		out = append(out, bs...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// listCluster lists the backups under one cluster's directory.
func listCluster(ctx context.Context, s *Store, namespace, instance, sysid string) ([]BackupInfo, error) {
	base := path.Join(clusterDir(namespace, instance, sysid), "base")
	objs, err := s.list(ctx, base, true)
	if err != nil {
		return nil, err
	}
	byID := map[string]*BackupInfo{}
	for _, o := range objs {
		id, name, ok := strings.Cut(strings.TrimPrefix(o.Key, base+"/"), "/")
		if !ok {
			continue
		}
		bi := byID[id]
		if bi == nil {
			bi = &BackupInfo{ID: id, SystemIdentifier: sysid, dir: path.Join(base, id)}
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
			m, sum, err := readManifestAt(ctx, s, bi.dir, bi.ID)
			switch {
			case errors.Is(err, ErrDamaged):
				bi.Completed, bi.Damaged = false, err.Error()
			case errors.Is(err, ErrNotFound):
				// Deleted since it was listed.
				continue
			case err != nil:
				return nil, err
			case m.layoutSysid() != sysid || m.Namespace != namespace || m.Instance != instance:
				bi.Completed = false
				bi.Damaged = fmt.Sprintf("manifest.json names %s/%s of cluster %s, but is stored under %s", m.Namespace, m.Instance, m.SystemIdentifier, bi.dir)
			default:
				bi.Manifest, bi.ManifestSHA256, bi.SystemIdentifier = m, sum, m.SystemIdentifier
			}
		}
		out = append(out, *bi)
	}
	return out, nil
}

// ReadManifest reads a completed backup's manifest and its checksum.
func ReadManifest(ctx context.Context, s *Store, namespace, instance, id string) (*Manifest, string, error) {
	all, err := List(ctx, s, namespace, instance)
	if err != nil {
		return nil, "", err
	}
	for _, b := range all {
		switch {
		case b.ID != id:
		case b.Completed:
			return b.Manifest, b.ManifestSHA256, nil
		case b.Damaged != "":
			return nil, "", fmt.Errorf("backup %s of %s/%s in %s is damaged: %s", id, namespace, instance, s, b.Damaged)
		}
	}
	return nil, "", fmt.Errorf("backup %s of %s/%s in %s is not completed (it has no manifest) or does not exist", id, namespace, instance, s)
}

// readManifestAt reads the manifest in dir.
func readManifestAt(ctx context.Context, s *Store, dir, id string) (*Manifest, string, error) {
	b, err := s.get(ctx, path.Join(dir, manifestName))
	if err != nil {
		return nil, "", err
	}
	m := &Manifest{}
	if err := json.Unmarshal(b, m); err != nil {
		return nil, "", fmt.Errorf("backup %s: manifest.json: %w: %w", id, ErrDamaged, err)
	}
	if m.ID != id {
		return nil, "", fmt.Errorf("backup %s: manifest.json: %w: it is of backup %q", id, ErrDamaged, m.ID)
	}
	return m, sha256Hex(b), nil
}
