package hub

import (
	"bytes"
	"encoding/binary"
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
		return fmt.Sprintf("the gzipped body decompresses to more than %d bytes, the most the hub takes for its compressed size (usage files compress about 8:1)", e.limit)
	}
	return fmt.Sprintf("the body is larger than %d bytes, the hub's limit", e.limit)
}

// readBody reads an upload under the cap and returns it decompressed when
// it was gzipped (the verifier accepts both forms).
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
		return gunzip(data, limit)
	}
	return data, nil
}

// keepRatio and keepFloor bound what gunzip keeps in memory before it
// knows the decompressed size: usage files compress about 8:1 (their
// record ids are random), so a real file fits in keepRatio times its
// compressed size, while a gzip bomb (1000:1) overflows early.
const (
	keepRatio = 12
	keepFloor = 32 << 20
)

// gunzip decompresses a gzipped body under limit in one pass, keeping at
// most max(keepFloor, keepRatio × its compressed size). A stream that goes
// past that is refused as too large, whatever the limit: handing it on to
// be decompressed again would let a small body cost the hub up to the
// limit in memory, twice per site at once. A stream that is not valid gzip
// is returned as it came, for the verifier to name the fault.
func gunzip(data []byte, limit int64) ([]byte, error) {
	keep := min(limit, max(keepFloor, keepRatio*int64(len(data))))
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return data, nil
	}
	zr.Multistream(false)
	// The trailer's size (untrusted, a hint) sizes the buffer once.
	size := keep
	if hint := int64(binary.LittleEndian.Uint32(data[len(data)-4:])); hint >= int64(len(data)) {
		size = min(hint, keep)
	}
	var buf bytes.Buffer
	buf.Grow(int(size) + bytes.MinRead)
	n, err := buf.ReadFrom(io.LimitReader(zr, keep+1))
	if err != nil {
		return data, nil
	}
	if n > keep {
		return nil, &bodyTooLargeError{limit: keep, compressed: true}
	}
	return buf.Bytes(), nil
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
