package usageexport_test

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/outpostdata/outpost/usageexport"
)

// FuzzVerify feeds arbitrary bytes to the file parser and verifier. They
// must never panic, and anything accepted must really be signed by the key
// inside it: re-opening the payload gives the same hash. The seed corpus (a
// signed file, the same gzipped, and a near miss) runs with every `go
// test`; `go test -fuzz FuzzVerify ./usageexport` explores further.
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
