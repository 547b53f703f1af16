package hub

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/klauspost/compress/gzip"
)

// DefaultMaxBody bounds an upload, compressed or not. A year of a site with
// 100 instances, every instance with a record every hour (876,000
// records), is a 297 MiB file, 38 MiB gzipped; the cap leaves room above
// that and stays far below what would strain the hub.
const DefaultMaxBody = 384 << 20

// DefaultPerSite is how many uploads of one site may be read and stored
// at once; a site's streamer sends one batch at a time.
const DefaultPerSite = 2

func (h *Hub) maxBody() int64 {
	if h.MaxBody > 0 {
		return h.MaxBody
	}
	return DefaultMaxBody
}

func (h *Hub) perSite() int {
	if h.PerSite > 0 {
		return h.PerSite
	}
	return DefaultPerSite
}

// bodyTooLargeError is an upload over the cap, compressed or once
// decompressed; the HTTP answer is 413.
type bodyTooLargeError struct {
	limit      int64
	compressed bool
}

func (e *bodyTooLargeError) Error() string {
	if e.compressed {
		return fmt.Sprintf("the gzipped body decompresses to more than %d bytes, the hub's limit", e.limit)
	}
	return fmt.Sprintf("the body is larger than %d bytes, the hub's limit", e.limit)
}

// readBody reads an upload under the cap. A gzipped body is first
// decompressed as a stream, counting and keeping nothing, so a gzip bomb
// is refused after at most the cap's worth of work and no memory beyond
// its compressed bytes; only a body that fits is decompressed again (by
// the verifier) to be kept.
func (h *Hub) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	limit := h.maxBody()
	if r.ContentLength > limit {
		return nil, &bodyTooLargeError{limit: limit}
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		// ReadFrom asks for MinRead bytes of room before every read, the
		// last (which finds EOF) included: without that slack a full
		// buffer would be doubled just to learn the body has ended.
		buf.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, &bodyTooLargeError{limit: limit}
	}
	if err != nil {
		return nil, err
	}
	data := buf.Bytes()
	if len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b {
		if n := gunzippedSize(data, limit); n > limit {
			return nil, &bodyTooLargeError{limit: limit, compressed: true}
		}
	}
	return data, nil
}

// gunzippedSize is how many bytes data decompresses to, counting no
// further than limit+1. A stream that is not valid gzip counts what came
// out before the fault; the verifier then names the fault.
func gunzippedSize(data []byte, limit int64) int64 {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return 0
	}
	zr.Multistream(false)
	n, _ := io.Copy(io.Discard, io.LimitReader(zr, limit+1))
	return n
}

// inflight counts each site's uploads in progress.
type inflight struct {
	mu sync.Mutex
	n  map[string]int
}

// acquire takes one of a site's max slots; ok is false when all are taken.
// release gives it back.
func (f *inflight) acquire(site string, max int) (release func(), ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == nil {
		f.n = map[string]int{}
	}
	if f.n[site] >= max {
		return nil, false
	}
	f.n[site]++
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.n[site]--; f.n[site] == 0 {
			delete(f.n, site)
		}
	}, true
}
