package backup

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// syncFilesystem flushes the file system that holds dir to disk. A restore
// is not done while the data it wrote sits in the page cache: a power cut
// after `outpost backup restore` returns would lose it, and the peers
// (pgBackRest, WAL-G) count their flush inside the restore. One syncfs costs
// the same disk time as an fsync per file, without a system call for each of
// a data directory's thousands of files; it also flushes the directories.
func syncFilesystem(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
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
// files the same way. It is only a hint: durability comes from
// syncFilesystem, so an error here (a file system without the call) changes
// nothing.
func startWriteback(f *os.File, off, n int64) {
	if writeBehind {
		_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
	}
}

// writeBehind is off only in the test that shows the final flush: with it
// on, a restore's data never piles up dirty where a test could see it.
var writeBehind = true
