package backup

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"math"
	mathrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// The object format is zstd frames: compressible segments compressed,
// incompressible ones stored raw; both, and a mix, must come back exactly,
// with and without encryption.
func TestSealOpenRoundTripsCompressibleRandomAndMixedData(t *testing.T) {
	random := make([]byte, 3*segmentSize+12345)
	rand.Read(random)
	text := bytes.Repeat([]byte("pgbench_accounts row 0000000 aid bid abalance filler "), 400_000)
	mixed := append(append(append([]byte{}, text[:2*segmentSize+7]...), random[:segmentSize+99]...), text[:segmentSize/3]...)
	keys := newKeys(t)
	for _, k := range []struct {
		name string
		keys Keys
	}{{"plain", Keys{}}, {"encrypted", keys}} {
		for _, c := range []struct {
			name string
			raw  []byte
		}{{"random", random}, {"text", text}, {"mixed", mixed}, {"empty", nil}, {"tiny", []byte("x")}, {"one raw block", random[:maxBlockSize]}} {
			var sealed bytes.Buffer
			if err := k.keys.seal(&sealed, c.raw); err != nil {
				t.Fatalf("%s %s: seal: %v", k.name, c.name, err)
			}
			got, err := k.keys.open(c.name, sealed.Bytes())
			if err != nil {
				t.Fatalf("%s %s: open: %v", k.name, c.name, err)
			}
			if !bytes.Equal(got, c.raw) {
				t.Fatalf("%s %s: %d bytes came back, want the %d sealed", k.name, c.name, len(got), len(c.raw))
			}
			if k.name == "plain" && c.name == "random" && sealed.Len() > len(c.raw)+len(c.raw)/1000 {
				t.Errorf("random data grew from %d to %d bytes", len(c.raw), sealed.Len())
			}
			if k.name == "plain" && c.name == "text" && sealed.Len() > len(c.raw)/20 {
				t.Errorf("repetitive text compressed only to %d of %d bytes", sealed.Len(), len(c.raw))
			}
		}
	}
	// Random data is stored in raw frames, not searched for matches.
	if f := compress(nil, random[:2*segmentSize]); !bytes.Equal(f, appendRawFrame(appendRawFrame(nil, random[:segmentSize]), random[segmentSize:2*segmentSize])) {
		t.Error("random segments were not stored as raw frames")
	}
}

// Pages of float vectors are mostly literals, whose Huffman coding saves
// about a tenth of their size and decodes at an eighth of the speed, and
// restores wait on decoding: their literals are stored as they are. Pages
// of rows that repeat their neighbours but for a few bytes are mostly
// matches, and Huffman coding their few literals is cheap to decode: it is
// kept (see encoder). The control is the float segment through an encoder
// with Huffman coding, whose first block must say so, or the check could
// not tell.
func TestLiteralsAreHuffmanCodedOnlyWhereTheyAreFew(t *testing.T) {
	rng := mathrand.New(mathrand.NewPCG(1, 2))
	floats := make([]byte, 0, segmentSize)
	for len(floats) < segmentSize {
		// A tuple of an HNSW index: a header much like its neighbours',
		// a neighbour list mostly of zeros, then 128 float4.
		floats = append(floats, "\x02\x00\x80\x0b\x18\x00\x00\x00\x00\x00\x00\x00\x01\x00\x02\x00"...)
		floats = append(floats, make([]byte, 64)...)
		for range 128 {
			floats = binary.LittleEndian.AppendUint32(floats, math.Float32bits(rng.Float32()*2-1))
		}
	}
	floats = floats[:segmentSize]
	rows := make([]byte, 0, segmentSize)
	for len(rows) < segmentSize {
		// A row much like pgbench's: a header, a short name in lower
		// case, and a blank-padded filler.
		rows = append(rows, "\x02\x00\x04\x00\x02\x09\x18\x00"...)
		for range 8 {
			rows = append(rows, byte('a'+rng.IntN(26)))
		}
		rows = append(rows, bytes.Repeat([]byte{' '}, 84)...)
	}
	rows = rows[:segmentSize]
	huffman, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		raw   []byte
		frame []byte
		want  byte
	}{
		{"float vectors", floats, compress(nil, floats), rawLiterals},
		{"rows with few literals", rows, compress(nil, rows), compressedLiterals},
		{"control: float vectors with Huffman coding", floats, huffman.EncodeAll(floats, nil), compressedLiterals},
	} {
		if got := firstLiteralsType(t, c.frame); got != c.want {
			t.Errorf("%s: the first block's literals are of type %d, want %d", c.name, got, c.want)
		}
		if len(c.frame) >= len(c.raw) {
			t.Errorf("%s: stored in %d bytes of %d, not compressed at all", c.name, len(c.frame), len(c.raw))
		}
	}
}

// Literals_Block_Type (RFC 8878, section 3.1.1.3.1.1).
const (
	rawLiterals        = 0
	compressedLiterals = 2
)

// firstLiteralsType is the literals type of frame's first block, which
// must be a compressed block.
func firstLiteralsType(t *testing.T, frame []byte) byte {
	t.Helper()
	var h zstd.Header
	if err := h.Decode(frame); err != nil {
		t.Fatal(err)
	}
	// Block_Type 2 is a compressed block; FirstBlock.Compressed also
	// holds for an RLE block, which has no literals section.
	const blockHeader, compressedBlock = 3, 2
	if !h.FirstBlock.OK || (frame[h.HeaderSize]>>1)&3 != compressedBlock {
		t.Fatalf("the first block is not a compressed block: %+v", h.FirstBlock)
	}
	return frame[h.HeaderSize+blockHeader] & 3
}

// Archiving gets only the recipient: it can seal but not open, and a key
// file holding only recipients parses.
func TestRecipientOnlyKeysSealButCannotOpen(t *testing.T) {
	full := newKeys(t)
	pub, err := ParseKeys("# archiving only\n" + full.Recipient() + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(pub.Identities) != 0 || !pub.Encrypted() {
		t.Fatalf("recipient-only keys: %+v", pub)
	}
	var sealed bytes.Buffer
	if err := pub.seal(&sealed, []byte("wal bytes")); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.open("x", sealed.Bytes()); err == nil {
		t.Fatal("a recipient opened what it sealed")
	}
	if raw, err := full.open("x", sealed.Bytes()); err != nil || string(raw) != "wal bytes" {
		t.Fatalf("the identity opens it: %q %v", raw, err)
	}
	if _, err := ParseKeys("# nothing\n"); err == nil {
		t.Fatal("a key file with no key parsed")
	}
}

// With a key configured, a plaintext object is refused however valid it
// is; without one it is read.
func TestPlaintextIsRefusedWhenAKeyIsConfigured(t *testing.T) {
	keys := newKeys(t)
	var plain bytes.Buffer
	if err := (Keys{}).seal(&plain, []byte("planted")); err != nil {
		t.Fatal(err)
	}
	if raw, err := (Keys{}).open("x", plain.Bytes()); err != nil || string(raw) != "planted" {
		t.Fatalf("control, no key: %q %v", raw, err)
	}
	if _, err := keys.open("x", plain.Bytes()); err == nil || !bytes.Contains([]byte(err.Error()), []byte("not encrypted")) {
		t.Fatalf("plaintext with a key configured: %v, want it refused", err)
	}
}

// The end of replay is the last line of the newest timeline history file.
func TestReplayEndReadsTheNewestHistoryFile(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "pg_wal"), 0o700)
	os.WriteFile(filepath.Join(dir, "pg_wal", "00000002.history"), []byte("1\t0/5000000\tno recovery target specified\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "pg_wal", "00000003.history"), []byte("1\t0/5000000\tno recovery target specified\n\n2\t0/9A0000C8\tbefore 2026-11-30 10:00:00+00\n"), 0o600)
	tli, end, reason, err := replayEnd(dir)
	if err != nil || tli != 2 || end != 0x9A0000C8 || reason != "before 2026-11-30 10:00:00+00" {
		t.Fatalf("replayEnd = %d %X %q %v", tli, end, reason, err)
	}
	if got := segmentName(2, end/walSegmentSize); got != "00000002000000000000009A" {
		t.Fatalf("segment of the end: %s", got)
	}
	if tli, segno := parseSegment("00000002000000010000009A"); tli != 2 || segmentName(tli, segno) != "00000002000000010000009A" {
		t.Fatalf("parseSegment round trip: %d %d", tli, segno)
	}
}

// newKeys is a new age identity.
func newKeys(t *testing.T) Keys {
	t.Helper()
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ParseKeys(key)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}
