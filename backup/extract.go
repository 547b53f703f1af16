package backup

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// extractTar writes the tar stream of s into dir, refusing names that
// leave it. archive/tar parses the headers in order; file contents are not
// copied out of the decoded objects but written from them, at their
// offsets, by one goroutine per CPU: writing into the page cache costs the
// kernel about as much CPU as decompressing, and a single writer would leave
// the other cores idle. Large files are written past the page cache
// (directwrite.go); those writes wait on the disk, not the CPU, hence two
// writers more than CPUs.
func extractTar(s *chunkStream, dir string, progress func(int64), timings *RestoreTimings) (err error) {
	w := newParallelWriter(runtime.GOMAXPROCS(0)+2, timings)
	s.w = w
	defer func() {
		s.close()
		if werr := w.finish(); err == nil {
			err = werr
		}
	}()
	tr := tar.NewReader(s)
	var written int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return w.failed()
		}
		if err != nil {
			return err
		}
		if err := w.failed(); err != nil {
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
			if h.Size >= directMin && writeBehind && !w.directUnsupported {
				// Refused, the file is written through the page cache
				// as before: a file system without O_DIRECT, or a
				// read-only file when not root (its first handle came
				// from creating it).
				of.direct, err = openDirect(p)
				if errors.Is(err, errDirectUnsupported) {
					w.directUnsupported = true
				}
			}
			// The data follows; the next tr.Next skips it through
			// s.Seek, which hands it to the writers.
			s.sinkTo(of, h.Size)
			written += h.Size
			if progress != nil {
				progress(written)
			}
		}
	}
}

// chunkStream reads the decoded objects of a backup, in order, as one
// stream. While a file's data passes (sinkTo), it also queues that data,
// as slices of the objects, to be written to the file.
type chunkStream struct {
	ctx    context.Context
	chunks <-chan *decoded
	// fetchErr says why chunks was closed early.
	fetchErr func() error
	cur      *decoded
	off      int
	pos      int64
	w        *parallelWriter

	sink             *openFile
	sinkOff, sinkLen int64
	timings          *RestoreTimings
}

// decoded is one object's raw bytes, shared by the write jobs that take
// slices of it; the last to finish gives the buffer back.
type decoded struct {
	data    []byte
	refs    atomic.Int32
	release func([]byte)
}

func (d *decoded) unref() {
	if d.refs.Add(-1) == 0 && d.release != nil {
		d.release(d.data)
	}
}

// sinkTo sends the next n bytes of the stream to of.
func (s *chunkStream) sinkTo(of *openFile, n int64) {
	if n == 0 {
		s.w.done(of)
		return
	}
	s.sink, s.sinkOff, s.sinkLen = of, 0, n
}

// load makes s.cur have unread bytes, or returns io.EOF at the end.
func (s *chunkStream) load() error {
	for s.cur == nil || s.off == len(s.cur.data) {
		if s.cur != nil {
			s.cur.unref()
			s.cur = nil
		}
		waited := time.Now()
		select {
		case d, ok := <-s.chunks:
			s.timings.add(StageStalled, waited)
			if !ok {
				if err := s.fetchErr(); err != nil {
					return err
				}
				return io.EOF
			}
			s.cur, s.off = d, 0
		case <-s.ctx.Done():
			return context.Cause(s.ctx)
		}
	}
	return nil
}

// take consumes up to n bytes of the current object, queueing what belongs
// to the sink file.
func (s *chunkStream) take(n int64) []byte {
	b := s.cur.data[s.off : s.off+int(min(n, int64(len(s.cur.data)-s.off)))]
	s.off += len(b)
	s.pos += int64(len(b))
	if s.sink != nil {
		k := min(int64(len(b)), s.sinkLen)
		if s.sink.direct != nil {
			s.w.addDirect(s.sink, s.cur, b[:k], s.sinkOff)
		} else {
			s.w.write(s.sink, s.cur, b[:k], s.sinkOff)
		}
		s.sinkOff += k
		s.sinkLen -= k
		if s.sinkLen == 0 {
			s.w.done(s.sink)
			s.sink = nil
		}
	}
	return b
}

func (s *chunkStream) Read(p []byte) (int, error) {
	if err := s.load(); err != nil {
		return 0, err
	}
	n := int64(len(p))
	if s.sink != nil {
		n = min(n, s.sinkLen)
	}
	return copy(p, s.take(n)), nil
}

// Seek only moves forward from the current position, which is all
// archive/tar asks of it to skip file data and padding.
func (s *chunkStream) Seek(offset int64, whence int) (int64, error) {
	if whence != io.SeekCurrent || offset < 0 {
		return 0, fmt.Errorf("backup stream: unsupported seek (%d, %d)", offset, whence)
	}
	for offset > 0 {
		if err := s.load(); err != nil {
			return 0, err
		}
		n := offset
		if s.sink != nil {
			n = min(n, s.sinkLen)
		}
		offset -= int64(len(s.take(n)))
	}
	return s.pos, nil
}

// close lets go of the current object and of a file left half written.
func (s *chunkStream) close() {
	if s.cur != nil {
		s.cur.unref()
		s.cur = nil
	}
	if s.sink != nil {
		s.w.done(s.sink)
		s.sink = nil
	}
}

// parallelWriter writes pieces of files at their offsets on a few
// goroutines. A file is closed once its last piece is written and the
// stream is done with it.
type parallelWriter struct {
	jobs chan writeJob
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  error
	// directUnsupported is set, by the stream, once the file system
	// refused an O_DIRECT open.
	directUnsupported bool
}

type openFile struct {
	f *os.File
	// direct is f opened again with O_DIRECT, for a large file; window
	// is the part of it not yet sent to the writers, from windowOff.
	direct    *os.File
	window    []part
	windowOff int64
	refs      atomic.Int32
}

// writeJob is buf, a slice of src, to be written at off through the page
// cache; or, with parts, a window to be written directly at off.
type writeJob struct {
	of    *openFile
	src   *decoded
	buf   []byte
	parts []part
	off   int64
}

func newParallelWriter(workers int, timings *RestoreTimings) *parallelWriter {
	w := &parallelWriter{jobs: make(chan writeJob, 4*workers)}
	for range workers {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			var window []byte
			for j := range w.jobs {
				if w.failed() == nil {
					start := time.Now()
					var err error
					if j.parts != nil {
						if window == nil {
							window = alignedBuffer(directWindow)
						}
						err = writeWindow(j, window)
					} else {
						err = writeBuffered(j.of.f, j.buf, j.off)
					}
					if err != nil {
						w.fail(err)
					}
					timings.add(StageWrite, start)
				}
				if j.parts != nil {
					for _, p := range j.parts {
						p.src.unref()
					}
				} else {
					j.src.unref()
				}
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

// open registers a file; the stream holds one reference until done.
func (w *parallelWriter) open(f *os.File) *openFile {
	of := &openFile{f: f}
	of.refs.Store(1)
	return of
}

// write queues buf, a slice of src, to be written to of at off.
func (w *parallelWriter) write(of *openFile, src *decoded, buf []byte, off int64) {
	of.refs.Add(1)
	src.refs.Add(1)
	w.jobs <- writeJob{of: of, src: src, buf: buf, off: off}
}

// done sends what is left of of's data and drops the stream's reference.
func (w *parallelWriter) done(of *openFile) {
	w.flushDirect(of)
	w.unref(of)
}

func (w *parallelWriter) unref(of *openFile) {
	if of.refs.Add(-1) != 0 {
		return
	}
	for _, f := range []*os.File{of.direct, of.f} {
		if f == nil {
			continue
		}
		if err := f.Close(); err != nil {
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
