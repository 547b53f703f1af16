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
	"path/filepath"
	"sort"
	"strings"
)

// ErrBrokenChain is an incremental backup one of whose ancestors is
// missing, incomplete, damaged or of another cluster: it cannot be
// restored.
var ErrBrokenChain = errors.New("its chain of backups is broken")

// Chain returns the backups a restore of backup id applies, its full
// backup first and id last; a full backup is a chain of one. A missing or
// damaged link is an error (ErrBrokenChain) naming it.
func Chain(ctx context.Context, s *Store, namespace, instance, id string) ([]*Manifest, error) {
	all, err := List(ctx, s, namespace, instance)
	if err != nil {
		return nil, err
	}
	for _, b := range all {
		if b.ID == id && b.Completed {
			return chainOf(all, b.Manifest)
		}
	}
	_, _, err = ReadManifest(ctx, s, namespace, instance, id)
	return nil, err
}

// chainOf walks m's parents in all, the instance's backups.
func chainOf(all []BackupInfo, m *Manifest) ([]*Manifest, error) {
	byID := make(map[string]BackupInfo, len(all))
	for _, b := range all {
		byID[b.ID] = b
	}
	chain := []*Manifest{m}
	for cur := m; cur.Incremental(); {
		if cur.Parent == "" || cur.Parent >= cur.ID {
			return nil, fmt.Errorf("backup %s: %w: it is incremental but names no older parent (%q)", m.ID, ErrBrokenChain, cur.Parent)
		}
		p, ok := byID[cur.Parent]
		switch {
		case !ok:
			return nil, fmt.Errorf("backup %s: %w: backup %s, which incremental backup %s is on top of, is not in the store (deleted?)", m.ID, ErrBrokenChain, cur.Parent, cur.ID)
		case p.Damaged != "":
			return nil, fmt.Errorf("backup %s: %w: backup %s, which incremental backup %s is on top of, is damaged: %s", m.ID, ErrBrokenChain, cur.Parent, cur.ID, p.Damaged)
		case !p.Completed:
			return nil, fmt.Errorf("backup %s: %w: backup %s, which incremental backup %s is on top of, is not completed (it has no manifest)", m.ID, ErrBrokenChain, cur.Parent, cur.ID)
		case p.Manifest.SystemIdentifier != m.SystemIdentifier:
			return nil, fmt.Errorf("backup %s: %w: its parent %s is of PostgreSQL cluster %s, not %s", m.ID, ErrBrokenChain, p.ID, p.Manifest.SystemIdentifier, m.SystemIdentifier)
		}
		cur = p.Manifest
		chain = append(chain, cur)
	}
	for i, j := 0, len(chain)-1; i < j; i, j = i+1, j-1 {
		chain[i], chain[j] = chain[j], chain[i]
	}
	return chain, nil
}

// applyIncremental puts incremental backup m, read from s, on top of the
// restore of its parent in dataDir: whole files are written, changed pages
// are written at their offsets, files are cut to the size m saw, and files
// and directories m did not see are removed. Every file m lists must then
// exist; one that does not means the chain below m lacked it.
func applyIncremental(s *chunkStream, m *Manifest, dataDir string) error {
	err := applyTar(s, dataDir)
	s.close()
	if err != nil {
		return err
	}
	return applyFileList(m, dataDir)
}

// applyTar writes an incremental backup's tar stream into dir.
func applyTar(s *chunkStream, dir string) (err error) {
	wb := newWritebacks()
	defer func() {
		if werr := wb.wait(); err == nil {
			err = werr
		}
	}()
	tr := tar.NewReader(s)
	page := make([]byte, 4+pageSize)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.FromSlash(strings.TrimSuffix(h.Name, "/"))
		if !filepath.IsLocal(name) {
			return fmt.Errorf("backup holds the path %q, which leaves the data directory", h.Name)
		}
		p := filepath.Join(dir, name)
		switch {
		case h.Typeflag == tar.TypeDir:
			if err := os.MkdirAll(p, os.FileMode(h.Mode).Perm()|0o700); err != nil {
				return err
			}
		case h.Typeflag == tar.TypeReg && isPagesEntry(h):
			if h.Size%int64(len(page)) != 0 {
				return fmt.Errorf("%s: changed pages entry of %d bytes, not a whole number of pages", h.Name, h.Size)
			}
			// The file must come from a link below: changed pages of a
			// file no link holds mean the chain does not fit together.
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				return fmt.Errorf("%s: changed pages of a file the backups below do not hold: %w", h.Name, err)
			}
			for range h.Size / int64(len(page)) {
				if _, err = io.ReadFull(tr, page); err != nil {
					break
				}
				blk := binary.LittleEndian.Uint32(page)
				if _, err = f.WriteAt(page[4:], int64(blk)*pageSize); err != nil {
					break
				}
			}
			if err != nil {
				f.Close()
				return fmt.Errorf("write pages of %s: %w", p, err)
			}
			wb.add(f)
		case h.Typeflag == tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode).Perm())
			if err != nil {
				return err
			}
			if _, err = io.Copy(f, tr); err != nil {
				f.Close()
				return fmt.Errorf("write %s: %w", p, err)
			}
			wb.add(f)
		}
	}
}

// writebacks starts the writeback of the files an incremental backup
// wrote, and closes them, on a goroutine of its own: as the full backup's
// files are (durable.go), so that the final sync does not wait for every
// link's pages, but without the apply waiting for each file's writeback to
// be queued (60 ms of every incremental's 180 ms, measured).
type writebacks struct {
	files chan *os.File
	done  chan struct{}
	err   error
}

func newWritebacks() *writebacks {
	w := &writebacks{files: make(chan *os.File, 256), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for f := range w.files {
			var err error
			if w.err == nil {
				err = startWriteback(f, 0, 0)
			}
			if cerr := f.Close(); err == nil {
				err = cerr // names the file
			}
			if w.err == nil {
				w.err = err
			}
		}
	}()
	return w
}

// add hands over f, written in full, to be written back and closed.
func (w *writebacks) add(f *os.File) { w.files <- f }

// wait returns once every file is handed to the disk and closed, with the
// first error.
func (w *writebacks) wait() error {
	close(w.files)
	<-w.done
	return w.err
}

// applyFileList makes dataDir hold exactly the files and directories m
// lists, each file of the size m saw.
func applyFileList(m *Manifest, dataDir string) error {
	files := make(map[string]int64, len(m.Files))
	for _, f := range m.Files {
		files[f.Path] = f.Size
	}
	dirs := make(map[string]bool, len(m.Dirs))
	for _, d := range m.Dirs {
		dirs[d] = true
	}
	var gone []string
	err := filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dataDir, p)
		rel = filepath.ToSlash(rel)
		switch {
		case rel == ".":
		case d.IsDir() && !dirs[rel]:
			gone = append(gone, p)
			return fs.SkipDir
		case !d.IsDir():
			if _, ok := files[rel]; !ok {
				gone = append(gone, p)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("backup %s: list %s: %w", m.ID, dataDir, err)
	}
	for _, p := range gone {
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("backup %s: remove %s, which it does not hold: %w", m.ID, p, err)
		}
	}
	var missing []string
	for rel, size := range files {
		p := filepath.Join(dataDir, filepath.FromSlash(rel))
		info, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, rel)
			continue
		} else if err != nil {
			return err
		}
		if info.Size() != size {
			// Shorter: the file shrank while it was read (WAL replay
			// repeats that), padded as a full backup pads it.
			if err := os.Truncate(p, size); err != nil {
				return fmt.Errorf("backup %s: cut %s to %d bytes: %w", m.ID, rel, size, err)
			}
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("backup %s: %w: it lists %d files that neither it nor the backups below it hold, first %s", m.ID, ErrBrokenChain, len(missing), missing[0])
	}
	return nil
}
