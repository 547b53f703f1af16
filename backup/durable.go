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
