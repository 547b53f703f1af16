package backup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
)

// Layout of one instance's objects under the store's prefix:
//
//	<namespace>/<instance>/lease.json                 the one-writer lease
//	<namespace>/<instance>/<sysid>/base/<id>/...      base backups of one cluster
//	<namespace>/<instance>/<sysid>/wal/<segment>      its archived WAL
//
// <sysid> is the PostgreSQL system identifier of the cluster (initdb makes a
// new one), so an instance deleted and re-created under the same name
// archives into a directory of its own and never meets the old cluster's
// WAL. Backups made before this layout (manifest format 1) sit directly under
// <namespace>/<instance>/base and .../wal; they are still listed and
// restored, and their WAL is read from there when the cluster's own
// directory does not hold a segment, after checking the segment's system
// identifier.

// Manifest formats. Format 1 manifests are in the old layout. Full backups
// are still written as format 2 (the files list they gained is an extra
// field older readers ignore), so older versions restore them. Incremental
// backups are format 3: restoring one takes its whole chain, which older
// versions cannot do.
const (
	layoutFormat      = 2
	manifestFormat    = 2
	incrementalFormat = 3
)

func instanceDir(namespace, instance string) string { return path.Join(namespace, instance) }

// clusterDir is where one cluster's backups and WAL are; an empty sysid is
// the old layout.
func clusterDir(namespace, instance, sysid string) string {
	return path.Join(namespace, instance, sysid)
}

func baseDir(namespace, instance, sysid, id string) string {
	return path.Join(clusterDir(namespace, instance, sysid), "base", id)
}

func walKey(namespace, instance, sysid, segment string) string {
	return path.Join(clusterDir(namespace, instance, sysid), "wal", segment)
}

// layoutSysid is the directory component of a manifest's backup: its system
// identifier, or empty in the old layout.
func (m *Manifest) layoutSysid() string {
	if m.Format < layoutFormat {
		return ""
	}
	return m.SystemIdentifier
}

// dir is where the manifest's backup is stored.
func (m *Manifest) dir() string {
	return baseDir(m.Namespace, m.Instance, m.layoutSysid(), m.ID)
}

// ErrWrongCluster is WAL or a backup of another PostgreSQL cluster than the
// one asked for, typically of an instance that was deleted and re-created
// under the same name.
var ErrWrongCluster = errors.New("belongs to another PostgreSQL cluster")

// segmentSysid reads the system identifier from the long header of a WAL
// segment's first page (XLogLongPageHeaderData: xlp_sysid at byte 24).
func segmentSysid(raw []byte) (string, bool) {
	if len(raw) < 32 {
		return "", false
	}
	// xlp_info bit XLP_LONG_HEADER (0x0002) marks the long header.
	if binary.LittleEndian.Uint16(raw[2:4])&0x0002 == 0 {
		return "", false
	}
	return strconv.FormatUint(binary.LittleEndian.Uint64(raw[24:32]), 10), true
}

// controlFileSysid reads the system identifier, the first field of
// global/pg_control, of the data directory that holds walFile in its
// pg_wal.
func controlFileSysid(walFile string) (string, error) {
	f := filepath.Join(filepath.Dir(walFile), "..", "global", "pg_control")
	b, err := os.ReadFile(f)
	if err != nil {
		return "", fmt.Errorf("read the cluster's system identifier: %w", err)
	}
	if len(b) < 8 {
		return "", fmt.Errorf("%s is too short to be a control file", f)
	}
	return strconv.FormatUint(binary.LittleEndian.Uint64(b[:8]), 10), nil
}

// isSegmentName reports whether name is a WAL segment's (24 hex digits),
// not a history or backup history file.
func isSegmentName(name string) bool {
	if len(name) != 24 {
		return false
	}
	for _, c := range name {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}
