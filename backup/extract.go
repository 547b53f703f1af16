package backup

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
)

// extractTar writes a tar stream into dir, refusing names that leave it.
// The stream is parsed in order, but file contents are written at their
// offsets by one goroutine per CPU: writing into the page cache costs the
// kernel about as much CPU as decompressing, and a single writer would leave
// the other cores idle.
func extractTar(r io.Reader, dir string, progress func(int64)) (err error) {
	tr := tar.NewReader(r)
	w := newParallelWriter(runtime.GOMAXPROCS(0), 4<<20)
	defer func() {
		if werr := w.finish(); err == nil {
			err = werr
		}
	}()
	var written int64
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
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, os.FileMode(h.Mode).Perm()|0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode).Perm())
			if err != nil {
				return err
			}
			of := w.open(f)
			var off int64
			for {
				buf, err := w.buffer()
				if err != nil {
					w.done(of)
					return err
				}
				n, rerr := io.ReadFull(tr, buf)
				w.write(of, buf[:n], off)
				off += int64(n)
				if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
					break
				}
				if rerr != nil {
					w.done(of)
					return rerr
				}
			}
			w.done(of)
			written += off
			if progress != nil {
				progress(written)
			}
		}
	}
}

// parallelWriter writes pieces of files at their offsets on a few
// goroutines. Buffers circulate through free; a file is closed once its
// last piece is written and its reader is done with it.
type parallelWriter struct {
	jobs chan writeJob
	free chan []byte
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  error
}

type openFile struct {
	f    *os.File
	refs atomic.Int32
}

type writeJob struct {
	of  *openFile
	buf []byte
	off int64
}

func newParallelWriter(workers, bufSize int) *parallelWriter {
	w := &parallelWriter{jobs: make(chan writeJob, workers), free: make(chan []byte, 2*workers+2)}
	for range cap(w.free) {
		w.free <- make([]byte, bufSize)
	}
	for range workers {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for j := range w.jobs {
				if w.failed() == nil && len(j.buf) > 0 {
					if _, err := j.of.f.WriteAt(j.buf, j.off); err != nil {
						w.fail(fmt.Errorf("write %s: %w", j.of.f.Name(), err))
					}
				}
				w.free <- j.buf[:cap(j.buf)]
				w.unref(j.of)
			}
		}()
	}
	return w
}

func (w *parallelWriter) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *parallelWriter) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
}

// open registers a file; the caller holds one reference until done.
func (w *parallelWriter) open(f *os.File) *openFile {
	of := &openFile{f: f}
	of.refs.Store(1)
	return of
}

// buffer returns a free buffer, or the first write error.
func (w *parallelWriter) buffer() ([]byte, error) {
	if err := w.failed(); err != nil {
		return nil, err
	}
	return <-w.free, nil
}

// write queues buf (from buffer) to be written to of at off.
func (w *parallelWriter) write(of *openFile, buf []byte, off int64) {
	of.refs.Add(1)
	w.jobs <- writeJob{of: of, buf: buf, off: off}
}

// done drops the caller's reference to of.
func (w *parallelWriter) done(of *openFile) { w.unref(of) }

func (w *parallelWriter) unref(of *openFile) {
	if of.refs.Add(-1) == 0 {
		if err := of.f.Close(); err != nil {
			w.fail(fmt.Errorf("write %s: %w", of.f.Name(), err))
		}
	}
}

// finish waits for every queued write and returns the first error.
func (w *parallelWriter) finish() error {
	close(w.jobs)
	w.wg.Wait()
	return w.failed()
}
