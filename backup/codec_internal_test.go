package backup

import (
	"bytes"
	"crypto/rand"
	"testing"
)

// The object format is zstd frames: compressible segments compressed,
// incompressible ones stored raw; both, and a mix, must come back exactly,
// with and without encryption.
func TestSealOpenRoundTripsCompressibleRandomAndMixedData(t *testing.T) {
	random := make([]byte, 3*segmentSize+12345)
	rand.Read(random)
	text := bytes.Repeat([]byte("pgbench_accounts row 0000000 aid bid abalance filler "), 400_000)
	mixed := append(append(append([]byte{}, text[:2*segmentSize+7]...), random[:segmentSize+99]...), text[:segmentSize/3]...)
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ParseKeys(key)
	if err != nil {
		t.Fatal(err)
	}
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
