package harness

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/outpostdata/outpost/postgres"
)

// MinIO is a throwaway MinIO server on loopback with one empty bucket.
type MinIO struct {
	Endpoint  string // host:port
	AccessKey string
	SecretKey string
	Bucket    string
	Client    *minio.Client
}

// URL is the endpoint as an http URL, as an ObjectStore spec names it.
func (m *MinIO) URL() string { return "http://" + m.Endpoint }

// StartMinIO starts a MinIO server in a temporary directory on a free
// loopback port, creates a bucket, and stops the server when the test ends.
func StartMinIO(tb testing.TB) *MinIO {
	tb.Helper()
	bin := Tool(tb, "minio")
	dir := TempDir(tb)
	m := &MinIO{
		Endpoint:  fmt.Sprintf("127.0.0.1:%d", FreePort(tb)),
		AccessKey: "outpost-test",
		SecretKey: postgres.GeneratePassword(),
		Bucket:    "outpost-test",
	}
	cmd := exec.Command(bin, "server", filepath.Join(dir, "data"),
		"--address", m.Endpoint,
		"--console-address", fmt.Sprintf("127.0.0.1:%d", FreePort(tb)),
		"--quiet")
	cmd.Env = append(cmd.Environ(),
		"MINIO_ROOT_USER="+m.AccessKey,
		"MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	)
	proc := startProcess(tb, "minio", dir, cmd)

	client, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")})
	if err != nil {
		tb.Fatalf("minio client: %v", err)
	}
	m.Client = client

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		err := client.MakeBucket(ctx, m.Bucket, minio.MakeBucketOptions{})
		if err == nil {
			return m
		}
		if proc.exited() {
			tb.Fatalf("minio exited during start; last log lines:\n%s", proc.logTail())
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("minio at %s not ready: %v; last log lines:\n%s", m.Endpoint, err, proc.logTail())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
