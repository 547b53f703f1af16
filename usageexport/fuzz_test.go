package usageexport_test

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/outpostdata/outpost/usageexport"
)

// FuzzVerify feeds arbitrary bytes to the file parser and verifier. They
// must never panic, and anything accepted must really be signed by the key
// inside it: re-opening the payload gives the same hash. The seed corpus (a
// signed file, the same gzipped, and a near miss, plus real monthly exports
// whole, gzipped and truncated in testdata/fuzz/FuzzVerify) runs with every
// `go test`; `go test -fuzz FuzzVerify ./usageexport` explores further, and
// inputs it finds interesting are kept there too.
func FuzzVerify(f *testing.F) {
	key, err := usageexport.LoadOrCreateKey(filepath.Join(f.TempDir(), "k"))
	if err != nil {
		f.Fatal(err)
	}
	payload := []byte(`{"formatVersion":1,"kind":"batch","site":{"id":"` + usageexport.SiteID(key.Public()) +
		`","name":"s","labels":{}},"controllerVersion":"t","generatedAt":"2026-11-01T00:00:00Z","previousExportSha256":"","instances":[],"records":[],"totals":[],"total":{"records":0,"milliVCoreSeconds":0,"vCoreHours":"0.000000"}}`)
	file, err := usageexport.Seal(payload, key)
	if err != nil {
		f.Fatal(err)
	}
	gz, err := usageexport.Gzip(file)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(file)
	f.Add(gz)
	f.Add([]byte("{}\n{}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := usageexport.Verify(data, usageexport.VerifyOptions{})
		if err != nil {
			return
		}
		o, err := usageexport.OpenSigned(data)
		if err != nil || o.PayloadSHA256 != v.PayloadSHA256 || !bytes.Equal(o.Payload, v.Opened.Payload) {
			t.Fatalf("accepted file does not open the same way twice: %v", err)
		}
	})
}

// TestFuzzCorpusExportsStillVerify keeps the checked-in corpus meaningful:
// its whole exports verify (so the fuzzer starts from files the verifier
// accepts, deep in its checks) and its truncated ones do not.
func TestFuzzCorpusExportsStillVerify(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzVerify")
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"export-2026-10", true}, {"export-2026-10-gzip", true}, {"export-2026-11", true},
		{"export-2026-11-gzip", true}, {"export-2026-10-truncated", false}, {"export-2026-11-truncated", false},
	} {
		b, err := os.ReadFile(filepath.Join(dir, tc.name))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitN(string(b), "\n", 3)
		if len(lines) < 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") {
			t.Fatalf("%s: not a go test fuzz v1 file", tc.name)
		}
		data, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		_, err = usageexport.Verify([]byte(data), usageexport.VerifyOptions{})
		if (err == nil) != tc.ok {
			t.Errorf("%s: verify error %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// TestForgedGzipSizeDoesNotAllocateGigabytes: the gzip trailer's size field
// is not covered by the signature. A file of a few hundred bytes claiming
// 4 GiB uncompressed is refused without allocating anything near that (the
// input FuzzVerify found is kept in its corpus as gzip-forged-size).
func TestForgedGzipSizeDoesNotAllocateGigabytes(t *testing.T) {
	key, err := usageexport.LoadOrCreateKey(filepath.Join(t.TempDir(), "k"))
	if err != nil {
		t.Fatal(err)
	}
	file, err := usageexport.Seal([]byte(`{"formatVersion":1}`), key)
	if err != nil {
		t.Fatal(err)
	}
	gz, err := usageexport.Gzip(file)
	if err != nil {
		t.Fatal(err)
	}
	copy(gz[len(gz)-4:], []byte{0xff, 0xff, 0xff, 0xff})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = usageexport.Verify(gz, usageexport.VerifyOptions{})
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a gzip file with a forged size verified")
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Errorf("verifying a %d-byte file allocated %d MiB", len(gz), grew>>20)
	}
	// The same bytes are in the fuzz corpus.
	b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzVerify", "gzip-forged-size"))
	if err != nil || !strings.HasPrefix(string(b), "go test fuzz v1\n[]byte(") {
		t.Errorf("corpus entry gzip-forged-size: %v", err)
	}
}
