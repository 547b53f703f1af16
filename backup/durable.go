package backup

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// fileSystem is a handle on the file system a restore writes to, opened
// before the first file is written: syncfs reports the write errors that
// happened since its handle was opened, and one taken only at the end would
// miss an error another syncfs of the same file system (PostgreSQL's at
// startup, another restore) had already collected.
type fileSystem struct{ dir *os.File }

func openFileSystem(dir string) (*fileSystem, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	return &fileSystem{dir: f}, nil
}

func (d *fileSystem) Close() error { return d.dir.Close() }

// sync flushes the file system to disk. A restore is not done while the
// data it wrote sits in the page cache: a power cut after `outpost backup
// restore` returns would lose it, and the peers (pgBackRest, WAL-G) count
// their flush inside the restore. One syncfs costs the same disk time as an
// fsync per file, without a system call for each of a data directory's
// thousands of files; it also flushes the directories.
func (d *fileSystem) sync() error {
	if err := unix.Syncfs(int(d.dir.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", d.dir.Name(), err)
	}
	return nil
}

// startWriteback asks the kernel to start writing f's bytes [off, off+n) to
// disk now, without waiting for it. Left to itself the kernel writes a
// restore's data back only once the dirty pages pass a share of memory (2 GB
// of 24 here) or grow 30 s old, so the disk idles while the restore
// downloads and the final syncfs then waits for all of it; and a restore that
// crosses the dirty limit is throttled to disk speed with everything still
// unwritten. Started as each piece lands, the writes overlap the download and
// the syncfs waits only for the last ones. PostgreSQL flushes its own data
// files the same way. Durability still comes from the final sync: a file
// system without the call is no error, but a write that failed is.
func startWriteback(f *os.File, off, n int64) error {
	if !writeBehind {
		return nil
	}
	err := unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
	if err == nil || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ESPIPE) {
		return nil
	}
	return fmt.Errorf("write %s: %w", f.Name(), err)
}

// writeBehind is off only in the test that shows the final flush: with it
// on, a restore's data never piles up dirty where a test could see it,
// being either handed to the disk as it lands or written past the page
// cache (directwrite.go).
var writeBehind = true
