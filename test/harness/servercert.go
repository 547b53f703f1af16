package harness

import (
	"path/filepath"
	"testing"
)

// ServerCert writes a self-signed certificate for 127.0.0.1 and localhost
// with its key into dir and returns their paths; the certificate file is
// also the CA bundle a client must trust.
func ServerCert(tb testing.TB, dir string) (certFile, keyFile string) {
	tb.Helper()
	writeSelfSignedCert(tb, dir)
	return filepath.Join(dir, "public.crt"), filepath.Join(dir, "private.key")
}
