package backup

import (
	"archive/tar"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// Block-level incremental backups. PostgreSQL 15 has none of its own, so an
// incremental backup reads every relation file and keeps only the pages
// whose LSN (pd_lsn, the first 8 bytes of each 8 KiB page) is at or after
// its parent's start LSN: a page with an older LSN was last changed by WAL
// the parent's checkpoint had already flushed, so the parent (or its own
// chain) holds it as it is now, up to hint bits, which are advisory.
//
// What is not judged by page LSN is taken whole:
//   - files the parent did not list: new files, including ones copied with
//     their old LSNs (CREATE DATABASE ... STRATEGY FILE_COPY);
//   - every file of a database directory that is not the one the parent
//     saw (databases.go): a database dropped and made again under the same
//     OID has files of the names the parent listed, copied with old LSNs;
//   - every file that is not a relation's main fork: pg_control, pg_xact,
//     configuration, the relation map, and the free space map (_fsm), whose
//     pages are not WAL-logged, the visibility map (_vm), whose bits are
//     cleared without moving its page LSN, and init forks;
//   - a main fork whose size is not a whole number of pages (caught in the
//     middle of being extended).
//
// Pages with LSN 0 are taken too: they are new, zeroed pages, and the
// parent may hold something else at that block if the file was truncated
// and extended again.
//
// A page may be torn while it is read, because PostgreSQL writes it at the
// same time. That is fine, exactly as for a full backup: the page was
// written because it changed after this backup's start checkpoint, and the
// first change after a checkpoint logs the whole page (full_page_writes is
// forced on during a backup), so WAL replay from this backup's start LSN
// overwrites it. The same holds for pages that changed while they were
// scanned and are left out: their change is after the start LSN too.
//
// In the tar stream a changed-pages entry carries the PAX record
// OUTPOST.pages; its data is, for each page, the block number in the file
// (4 bytes, little-endian) followed by the page. The manifest lists every
// file with its size, so a restore truncates files that shrank and removes
// files that are gone.

// pageSize is PostgreSQL's block size (BLCKSZ, 8 KiB in every build
// Outpost runs).
const pageSize = 8192

// paxPages marks a tar entry that holds changed pages, not a whole file.
const paxPages = "OUTPOST.pages"

// mainFork matches a relation's main fork segment under base/<db>/ or
// global/: "16384" or "16384.1".
var mainFork = regexp.MustCompile(`^(base/[0-9]+|global)/[0-9]+(\.[0-9]+)?$`)

// inventory records the files and directories a backup sees, and for an
// incremental backup decides which files are taken by page.
type inventory struct {
	files []FileEntry
	dirs  []string
	// parent is nil for a full backup; else the files its parent listed,
	// and since its start LSN.
	parent map[string]bool
	since  uint64
	// parentDatabases and databases identify each database directory as
	// the parent and this backup found it, just after each began.
	parentDatabases, databases map[string]string
	// scan holds the buffers the pages' LSNs are read through, one for
	// each span scanned at once.
	scan [][]byte
}

// byPage reports whether file rel, of size bytes, is taken by page.
func (inv *inventory) byPage(rel string, size int64) bool {
	return inv.parent != nil && inv.parent[rel] && size%pageSize == 0 && mainFork.MatchString(rel) && !inv.databaseRecreated(rel)
}

// databaseRecreated reports whether the database directory holding rel
// may not be the one the parent saw: its identity differs, or either backup
// lacks it (a directory being made or dropped as they began, or a parent
// from before identities were kept). Taking its files whole is always safe.
func (inv *inventory) databaseRecreated(rel string) bool {
	dir, _, ok := strings.Cut(strings.TrimPrefix(rel, "base/"), "/")
	if !ok || !strings.HasPrefix(rel, "base/") {
		return false
	}
	was, ok := inv.parentDatabases[dir]
	return !ok || was != inv.databases[dir]
}

// checkParentTimeline refuses a parent from another timeline, or from past
// the server's current WAL position: after a point-in-time restore into the
// same instance the cluster keeps its system identifier but branches, and
// pages changed on the new branch before the parent's start LSN would look
// unchanged.
func checkParentTimeline(ctx context.Context, conn *pgx.Conn, parent *Manifest) error {
	var walfile, current string
	if err := conn.QueryRow(ctx, "SELECT pg_walfile_name(pg_current_wal_lsn()), pg_current_wal_lsn()::text").Scan(&walfile, &current); err != nil {
		return fmt.Errorf("read the server's timeline: %w", err)
	}
	tli, err := strconv.ParseUint(walfile[:8], 16, 32)
	if err != nil {
		return fmt.Errorf("read the server's timeline from WAL file name %q: %w", walfile, err)
	}
	if uint32(tli) != parent.Timeline || parseLSN(parent.StopLSN) > parseLSN(current) {
		return fmt.Errorf("%w: parent backup %s is of timeline %d up to %s, the server is on timeline %d at %s (it was restored or promoted since): make a full backup first",
			ErrNoParent, parent.ID, parent.Timeline, parent.StopLSN, tli, current)
	}
	return nil
}

// scanSpan is the least of a file one scanning goroutine takes: reading
// pages from the page cache is bound by copying them (about 8 GB/s on one
// core), so a large file is cut into spans scanned side by side.
const scanSpan = 64 << 20

// changedPages reads f (size bytes) and returns the blocks whose page LSN
// is 0 or at or after inv.since, in order. A file that shrinks while it is
// read ends the scan of each span where it ends: its truncation is after
// this backup's start, so WAL replay repeats it. Each span stops at its
// next read once ctx is done, so a cancelled backup does not finish
// scanning a 1 GiB segment first.
func (inv *inventory) changedPages(ctx context.Context, f *os.File, size int64) ([]uint32, error) {
	spans := int(min(int64(runtime.GOMAXPROCS(0)), max(1, size/scanSpan)))
	for len(inv.scan) < spans {
		inv.scan = append(inv.scan, make([]byte, 128*pageSize))
	}
	if spans == 1 {
		return inv.scanSpan(ctx, f, inv.scan[0], 0, size)
	}
	// Spans end on page boundaries.
	per := (size/int64(spans) + pageSize - 1) / pageSize * pageSize
	found := make([][]uint32, spans)
	errs := make([]error, spans)
	var wg sync.WaitGroup
	for i := range spans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := int64(i) * per
			found[i], errs[i] = inv.scanSpan(ctx, f, inv.scan[i], start, min(size, start+per))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return slices.Concat(found...), nil
}

// scanSpan is changedPages over bytes [from, to) of f, read through buf.
func (inv *inventory) scanSpan(ctx context.Context, f *os.File, buf []byte, from, to int64) ([]uint32, error) {
	var blocks []uint32
	for off := from; off < to; {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		n, err := f.ReadAt(buf[:min(int64(len(buf)), to-off)], off)
		for p := 0; p+pageSize <= n; p += pageSize {
			// pd_lsn is {uint32 xlogid; uint32 xrecoff} in the server's
			// byte order, little-endian on every platform Outpost runs on.
			lsn := uint64(binary.LittleEndian.Uint32(buf[p:]))<<32 | uint64(binary.LittleEndian.Uint32(buf[p+4:]))
			if lsn == 0 || lsn >= inv.since {
				blocks = append(blocks, uint32((off+int64(p))/pageSize))
			}
		}
		off += int64(n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return blocks, nil
}

// writePages writes the changed-pages entry of f (file rel, size bytes)
// into w. The pages are read a second time, after the scan, so that a
// 1 GiB segment is never held in memory; a page that changed in between
// is repaired by WAL replay as above.
func (inv *inventory) writePages(ctx context.Context, w *chunkWriter, header func(*tar.Header) error, f *os.File, rel string, info fs.FileInfo) error {
	blocks, err := inv.changedPages(ctx, f, info.Size())
	if err != nil {
		return fmt.Errorf("read %s: %w", rel, err)
	}
	if len(blocks) == 0 {
		return nil
	}
	n := int64(len(blocks)) * (4 + pageSize)
	if err := header(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: int64(info.Mode().Perm()), Size: n, ModTime: info.ModTime(),
		PAXRecords: map[string]string{paxPages: fmt.Sprint(len(blocks))}, Format: tar.FormatPAX}); err != nil {
		return err
	}
	var num [4]byte
	for _, b := range blocks {
		binary.LittleEndian.PutUint32(num[:], b)
		if _, err := w.Write(num[:]); err != nil {
			return err
		}
		if _, err := w.readFrom(io.NewSectionReader(f, int64(b)*pageSize, pageSize), pageSize); err != nil {
			return fmt.Errorf("read %s: %w", rel, err)
		}
	}
	if pad := (blockSize - n%blockSize) % blockSize; pad > 0 {
		return w.zeros(pad)
	}
	return nil
}

// ErrNoParent is an incremental backup that nothing can be the parent of:
// no completed backup of the running cluster, one from before a restore or
// promotion, or one whose own chain is broken. A full backup is what is
// needed (TypeIncrementalOrFull makes it).
var ErrNoParent = errors.New("no backup can be the parent of an incremental one")

// chooseParent finds the backup an incremental one goes on top of: id, or
// the newest completed backup of cluster sysid. It must list its files
// (made by a version with incremental backups) and its own chain must be
// whole.
func chooseParent(ctx context.Context, s *Store, namespace, instance, sysid, id string) (*Manifest, error) {
	all, err := List(ctx, s, namespace, instance)
	if err != nil {
		return nil, err
	}
	var parent *Manifest
	for _, b := range all {
		switch {
		case id != "" && b.ID == id && !b.Completed:
			return nil, fmt.Errorf("%w: parent backup %s is not completed or is damaged %s", ErrNoParent, id, b.Damaged)
		case id != "" && b.ID == id:
			parent = b.Manifest
		case id == "" && b.Completed && b.Manifest.SystemIdentifier == sysid:
			parent = b.Manifest
		}
	}
	switch {
	case parent == nil && id != "":
		return nil, fmt.Errorf("%w: parent backup %s of %s/%s is not in %s (outpost backup list shows them)", ErrNoParent, id, namespace, instance, s)
	case parent == nil:
		return nil, fmt.Errorf("%w: an incremental backup needs a parent, and %s/%s has no completed backup of cluster %s in %s: make a full backup first", ErrNoParent, namespace, instance, sysid, s)
	case parent.SystemIdentifier != sysid:
		return nil, fmt.Errorf("%w: parent backup %s is of PostgreSQL cluster %s, not of the running one (%s): %w", ErrNoParent, parent.ID, parent.SystemIdentifier, sysid, ErrWrongCluster)
	case len(parent.Files) == 0:
		return nil, fmt.Errorf("%w: parent backup %s was made by an older version of Outpost and does not list its files, so no incremental backup can go on top of it: make a full backup first", ErrNoParent, parent.ID)
	}
	// An incremental on top of a broken chain could never be restored.
	if _, err := chainOf(all, parent); err != nil {
		return nil, fmt.Errorf("%w: parent backup %s cannot be restored, so no incremental backup can go on top of it (make a full backup): %w", ErrNoParent, parent.ID, err)
	}
	return parent, nil
}

// parentFiles is the set of files parent listed.
func parentFiles(parent *Manifest) map[string]bool {
	out := make(map[string]bool, len(parent.Files))
	for _, f := range parent.Files {
		out[f.Path] = true
	}
	return out
}

// isPagesEntry reports whether a tar header is a changed-pages entry.
func isPagesEntry(h *tar.Header) bool {
	_, ok := h.PAXRecords[paxPages]
	return ok
}
