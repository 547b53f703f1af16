package backup

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A restore writes the large files of a full backup with O_DIRECT: from
// an aligned buffer straight to the disk, past the page cache. Written
// through the page cache, every byte costs the kernel a new cache page, a
// copy and a later writeback, and the final sync waits for the writeback;
// measured on this kind of machine, 1 GiB written and synced took 1.5–3.5 s
// that way and 0.75–0.9 s with O_DIRECT. Durability still comes from the
// final syncfs, which also flushes the disk's own cache.
//
// A file's data reaches the writers in slices of the decoded objects, at
// whatever offsets the tar stream put them; O_DIRECT needs the memory, the
// file offset and the length aligned. So a file is cut into windows of
// directWindow bytes at aligned offsets, each window's slices are copied
// into an aligned buffer, and the window is written in one call. Only the
// file's end, past its last aligned byte, goes through the page cache, and
// it never shares a page with a window written directly (mixing the two on
// one page can lose a write).

const (
	// directAlign is the alignment O_DIRECT needs here: the page size,
	// which is at least every disk's logical block size.
	directAlign = 4096
	// directWindow is how much of a file one direct write takes.
	directWindow = 4 << 20
	// directMin is the least size of a file written directly: smaller
	// ones are not worth a second open.
	directMin = 256 << 10
)

// part is a slice of a decoded object on its way to a file.
type part struct {
	src *decoded
	buf []byte
}

// openDirect opens the file at p, which the restore has just created, a
// second time for writing with O_DIRECT. A file system that refuses
// O_DIRECT (tmpfs before Linux 6.6, some FUSE ones) returns
// errDirectUnsupported, and the restore writes through the page cache.
func openDirect(p string) (*os.File, error) {
	f, err := os.OpenFile(p, os.O_WRONLY|unix.O_DIRECT, 0)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
		return nil, errDirectUnsupported
	}
	return f, err
}

var errDirectUnsupported = errors.New("O_DIRECT is not supported here")

// addDirect queues buf, a slice of src at offset off of of's file, for a
// direct write: it joins the current window, and every window it
// completes is sent to the writers. Called by the stream only, in file
// order.
func (w *parallelWriter) addDirect(of *openFile, src *decoded, buf []byte, off int64) {
	for len(buf) > 0 {
		if len(of.window) == 0 {
			of.windowOff = off
		}
		end := (of.windowOff/directWindow + 1) * directWindow
		k := min(int64(len(buf)), end-off)
		src.refs.Add(1)
		of.window = append(of.window, part{src: src, buf: buf[:k]})
		buf, off = buf[k:], off+k
		if off == end {
			w.flushDirect(of)
		}
	}
}

// flushDirect sends of's current window, full or the file's last, to the
// writers.
func (w *parallelWriter) flushDirect(of *openFile) {
	if len(of.window) == 0 {
		return
	}
	of.refs.Add(1)
	w.jobs <- writeJob{of: of, parts: of.window, off: of.windowOff}
	of.window = nil
}

// writeWindow copies a window's parts into buf (aligned, directWindow
// bytes) and writes them: the aligned bytes directly, the rest (only at
// the file's end) through the page cache.
func writeWindow(j writeJob, buf []byte) error {
	n := 0
	for _, p := range j.parts {
		if len(p.buf) > len(buf)-n {
			return fmt.Errorf("write %s: a window of more than %d bytes at %d", j.of.f.Name(), len(buf), j.off)
		}
		n += copy(buf[n:], p.buf)
	}
	aligned := n &^ (directAlign - 1)
	if aligned > 0 {
		if _, err := j.of.direct.WriteAt(buf[:aligned], j.off); errors.Is(err, unix.EINVAL) {
			// The file system took the O_DIRECT open but not this
			// write; these pages are this window's alone.
			if err := writeBuffered(j.of.f, buf[:aligned], j.off); err != nil {
				return err
			}
		} else if err != nil {
			return fmt.Errorf("write %s: %w", j.of.f.Name(), err)
		}
	}
	if aligned < n {
		return writeBuffered(j.of.f, buf[aligned:n], j.off+int64(aligned))
	}
	return nil
}

// writeBuffered writes buf at off through the page cache and starts its
// writeback.
func writeBuffered(f *os.File, buf []byte, off int64) error {
	if _, err := f.WriteAt(buf, off); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	return startWriteback(f, off, int64(len(buf)))
}

// alignedBuffer returns n bytes starting at a directAlign boundary.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+directAlign)
	skip := (directAlign - int(uintptr(unsafe.Pointer(unsafe.SliceData(b)))%directAlign)) % directAlign
	return b[skip : skip+n : skip+n]
}
