package backup

import (
	"archive/tar"
	"context"
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
// the other cores idle.
func extractTar(s *chunkStream, dir string, progress func(int64), timings *RestoreTimings) (err error) {
	w := newParallelWriter(runtime.GOMAXPROCS(0), timings)
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
			// The data follows; the next tr.Next skips it through
			// s.Seek, which hands it to the writers.
			s.sinkTo(w.open(f), h.Size)
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
		s.w.write(s.sink, s.cur, b[:k], s.sinkOff)
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
}

type openFile struct {
	f    *os.File
	refs atomic.Int32
}

type writeJob struct {
	of  *openFile
	src *decoded
	buf []byte
	off int64
}

func newParallelWriter(workers int, timings *RestoreTimings) *parallelWriter {
	w := &parallelWriter{jobs: make(chan writeJob, 4*workers)}
	for range workers {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for j := range w.jobs {
				if w.failed() == nil {
					start := time.Now()
					if _, err := j.of.f.WriteAt(j.buf, j.off); err != nil {
						w.fail(fmt.Errorf("write %s: %w", j.of.f.Name(), err))
					} else if err := startWriteback(j.of.f, j.off, int64(len(j.buf))); err != nil {
						w.fail(err)
					}
					timings.add(StageWrite, start)
				}
				j.src.unref()
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

// done drops the stream's reference to of.
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
