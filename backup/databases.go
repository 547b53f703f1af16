package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sys/unix"
)

// A database directory's identity tells an incremental backup whether the
// database its parent saw under base/<oid> is still the one there. A
// database dropped and made again under the same OID (CREATE DATABASE ...
// OID, as pg_upgrade does, with STRATEGY FILE_COPY copying the template's
// pages with their old LSNs) has files of the very names the parent listed,
// and its pages would look unchanged.
//
// The identity is PG_VERSION's inode number and change time, written once
// when the directory is made, and the transaction that wrote the database's
// catalog row (its xmin), which every CREATE DATABASE makes anew: a kernel
// may hand a freed inode number straight back, and its clock ticks
// coarsely. They are compared for equality, not judged against the parent's
// start, so a database made a moment before a full backup is still the same
// database at the next incremental one. ALTER DATABASE rewrites the row,
// and the next incremental backup then takes the database whole.
//
// A backup reads the identities after pg_backup_start and before reading
// any file. A database made again before that look shows another identity;
// one made again after it is in the WAL a restore replays from the start.
//
// An identity is recorded only for a database whose creation had committed,
// which CREATE DATABASE does after copying every file, so the walk that
// follows reads its files whole. The directories are read before and after
// the catalog, and one that changed in between is not recorded. Whatever is
// not recorded is taken whole by the next incremental backup, which is
// always safe.

// beforeBackupStart is called just before pg_backup_start; only tests set
// it, to make a database again where the identities must still see it.
var beforeBackupStart = func() {}

// databaseIdentities reads the identity of every database directory under
// dataDir/base whose database conn's catalog shows as made.
func databaseIdentities(ctx context.Context, conn *pgx.Conn, dataDir string) (map[string]string, error) {
	before, err := directoryIdentities(dataDir)
	if err != nil {
		return nil, err
	}
	rows, err := conn.Query(ctx, "SELECT oid::text, xmin::text FROM pg_database")
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	made := map[string]string{}
	var oid, xmin string
	if _, err := pgx.ForEachRow(rows, []any{&oid, &xmin}, func() error {
		made[oid] = xmin
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	after, err := directoryIdentities(dataDir)
	if err != nil {
		return nil, err
	}
	ids := make(map[string]string, len(made))
	for oid, xmin := range made {
		if id, ok := before[oid]; ok && id == after[oid] {
			ids[oid] = id + ":" + xmin
		}
	}
	return ids, nil
}

// directoryIdentities is the inode and change time of PG_VERSION in each
// directory under dataDir/base that has one.
func directoryIdentities(dataDir string) (map[string]string, error) {
	entries, err := os.ReadDir(filepath.Join(dataDir, "base"))
	if err != nil {
		return nil, fmt.Errorf("list database directories: %w", err)
	}
	ids := make(map[string]string, len(entries))
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		var st unix.Stat_t
		err := unix.Stat(filepath.Join(dataDir, "base", e.Name(), "PG_VERSION"), &st)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue // being made or dropped
		case err != nil:
			return nil, fmt.Errorf("identify database directory base/%s: %w", e.Name(), err)
		}
		ids[e.Name()] = fmt.Sprintf("%d:%d.%09d", st.Ino, st.Ctim.Sec, st.Ctim.Nsec)
	}
	return ids, nil
}
