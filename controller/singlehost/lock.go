package singlehost

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lock holds the state directory for one controller: two controllers on the
// same manifests would fight over the same servers.
type lock struct{ f *os.File }

func acquireLock(root string) (*lock, error) {
	path := filepath.Join(root, "controller.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		return nil, fmt.Errorf("another outpost controller (pid %s) is running on %s", strings.TrimSpace(string(b)), root)
	}
	f.Truncate(0)
	f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
	return &lock{f: f}, nil
}

// release lets the next controller in. The kernel releases the lock too
// when the process dies, so a crash never leaves the directory locked.
func (l *lock) release() { l.f.Close() }
