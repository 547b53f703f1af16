package harness_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/outpostdata/outpost/test/harness"
)

func TestMinIOStoresAndReturnsAnObject(t *testing.T) {
	m := harness.StartMinIO(t)
	ctx := context.Background()
	payload := bytes.Repeat([]byte("outpost "), 100_000)

	info, err := m.Client.PutObject(ctx, m.Bucket, "a/b/object", bytes.NewReader(payload), int64(len(payload)), minio.PutObjectOptions{})
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	if info.Size != int64(len(payload)) {
		t.Errorf("stored %d bytes, sent %d", info.Size, len(payload))
	}

	obj, err := m.Client.GetObject(ctx, m.Bucket, "a/b/object", minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	defer obj.Close()
	got, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("read back %d bytes that differ from the %d written", len(got), len(payload))
	}

	if _, err := m.Client.StatObject(ctx, m.Bucket, "a/b/missing", minio.StatObjectOptions{}); minio.ToErrorResponse(err).Code != "NoSuchKey" {
		t.Errorf("stat of a missing object: %v, want NoSuchKey", err)
	}
}

func TestMinIOTLSServesHTTPSWithItsOwnCA(t *testing.T) {
	m := harness.StartMinIOTLS(t)
	if !strings.HasPrefix(m.URL(), "https://127.0.0.1:") || len(m.CAPEM) == 0 {
		t.Fatalf("TLS MinIO: URL %s, %d bytes of CA", m.URL(), len(m.CAPEM))
	}
	ctx := context.Background()
	if _, err := m.Client.PutObject(ctx, m.Bucket, "x", strings.NewReader("over tls"), 8, minio.PutObjectOptions{}); err != nil {
		t.Fatalf("put over TLS with the CA: %v", err)
	}
	// A client that does not trust the CA is refused.
	_, err := http.Get(m.URL() + "/minio/health/live")
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("GET without the CA: %v, want an unknown-authority error", err)
	}
}
