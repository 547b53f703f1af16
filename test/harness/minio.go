package harness

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"syscall"
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

	bin, dir, console string
	proc              *process
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
		bin:       bin,
		dir:       dir,
		console:   fmt.Sprintf("127.0.0.1:%d", FreePort(tb)),
	}
	m.launch(tb)
	proc := m.proc

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

func (m *MinIO) launch(tb testing.TB) {
	cmd := exec.Command(m.bin, "server", filepath.Join(m.dir, "data"),
		"--address", m.Endpoint,
		"--console-address", m.console,
		"--quiet")
	cmd.Env = append(cmd.Environ(),
		"MINIO_ROOT_USER="+m.AccessKey,
		"MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	)
	m.proc = startProcess(tb, "minio", m.dir, cmd)
}

// Stop stops the server, for tests of an object store outage; its data
// stays for Start.
func (m *MinIO) Stop() { m.proc.stop() }

// Start starts a stopped server again on the same address and data, and
// waits until it answers.
func (m *MinIO) Start(tb testing.TB) {
	tb.Helper()
	m.launch(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		_, err := m.Client.BucketExists(ctx, m.Bucket)
		if err == nil {
			return
		}
		if m.proc.exited() {
			tb.Fatalf("minio exited during restart; last log lines:\n%s", m.proc.logTail())
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("minio at %s not ready after restart: %v; last log lines:\n%s", m.Endpoint, err, m.proc.logTail())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Pause freezes the server (SIGSTOP): connections are accepted by the
// kernel but never answered, like a store behind a stalled network.
func (m *MinIO) Pause() { m.proc.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume lets a paused server go on (SIGCONT).
func (m *MinIO) Resume() { m.proc.cmd.Process.Signal(syscall.SIGCONT) }
