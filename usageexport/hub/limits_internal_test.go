package hub

import (
	"bytes"
	"errors"
	"testing"

	"github.com/klauspost/compress/gzip"
)

// TestGunzipKeepsLittleBeforeItKnowsTheSize: a stream that decompresses
// past what gunzip keeps is refused, even under the limit (a bomb just
// under the cap would otherwise be decompressed whole by the verifier). A
// stream that fits comes back decompressed.
func TestGunzipKeepsLittleBeforeItKnowsTheSize(t *testing.T) {
	zeros := func(n int) []byte {
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestSpeed)
		zw.Write(make([]byte, n))
		zw.Close()
		return b.Bytes()
	}
	big := zeros(keepFloor + 1<<20) // far more compressible than usage files
	var tooLarge *bodyTooLargeError
	if out, err := gunzip(big, DefaultMaxBody); !errors.As(err, &tooLarge) {
		t.Fatalf("past what is kept, under the limit: %d bytes, %v; want it refused as too large", len(out), err)
	}
	if _, err := gunzip(big, keepFloor+1<<19); !errors.As(err, &tooLarge) {
		t.Fatalf("over the limit: %v, want it refused as too large", err)
	}
	small := zeros(1 << 20)
	if out, err := gunzip(small, DefaultMaxBody); err != nil || len(out) != 1<<20 {
		t.Fatalf("a stream that fits: %d bytes, %v; want 1 MiB decompressed", len(out), err)
	}
	if out, err := gunzip(small[:len(small)-3], DefaultMaxBody); err != nil || !bytes.Equal(out, small[:len(small)-3]) {
		t.Fatalf("a truncated stream: %d bytes, %v; want it back as it came, for the verifier to name", len(out), err)
	}
}
