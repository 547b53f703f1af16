package harness

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	// CAPEM and CAFile are the self-signed certificate a TLS server
	// (StartMinIOTLS) presents, which clients must trust; empty over http.
	CAPEM  []byte
	CAFile string

	bin, dir, console string
	proc              *Process
}

// URL is the endpoint as an http or https URL, as an ObjectStore spec names
// it.
func (m *MinIO) URL() string {
	if m.CAFile != "" {
		return "https://" + m.Endpoint
	}
	return "http://" + m.Endpoint
}

// StartMinIO starts a MinIO server in a temporary directory on a free
// loopback port, creates a bucket, and stops the server when the test ends.
func StartMinIO(tb testing.TB) *MinIO {
	tb.Helper()
	return startMinIO(tb, false, "127.0.0.1")
}

// StartMinIOOn is StartMinIO listening on host instead of loopback: the
// host's end of the test cluster's veth, where pods reach it.
func StartMinIOOn(tb testing.TB, host string) *MinIO {
	tb.Helper()
	return startMinIO(tb, false, host)
}

// StartMinIOTLS is StartMinIO serving https with a self-signed certificate
// for 127.0.0.1, generated into the test's temporary directory (MinIO's
// --certs-dir). The certificate is in CAPEM and CAFile; Client trusts it.
func StartMinIOTLS(tb testing.TB) *MinIO {
	tb.Helper()
	return startMinIO(tb, true, "127.0.0.1")
}

func startMinIO(tb testing.TB, secure bool, host string) *MinIO {
	tb.Helper()
	bin := Tool(tb, "minio")
	dir := TempDir(tb)
	m := &MinIO{
		Endpoint:  net.JoinHostPort(host, strconv.Itoa(freePortOn(tb, host))),
		AccessKey: "outpost-test",
		SecretKey: postgres.GeneratePassword(),
		Bucket:    "outpost-test",
		bin:       bin,
		dir:       dir,
		console:   fmt.Sprintf("127.0.0.1:%d", FreePort(tb)),
	}
	opts := &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")}
	if secure {
		certs := filepath.Join(dir, "certs")
		if err := os.Mkdir(certs, 0o700); err != nil {
			tb.Fatal(err)
		}
		m.CAPEM = writeSelfSignedCert(tb, certs)
		m.CAFile = filepath.Join(dir, "ca.crt")
		if err := os.WriteFile(m.CAFile, m.CAPEM, 0o644); err != nil {
			tb.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(m.CAPEM)
		tr, err := minio.DefaultTransport(true)
		if err != nil {
			tb.Fatal(err)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		tr.MaxIdleConnsPerHost = 64
		opts.Transport, opts.Secure = tr, true
	}
	m.launch(tb)
	proc := m.proc

	client, err := minio.New(m.Endpoint, opts)
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
		if proc.Exited() {
			tb.Fatalf("minio exited during start; last log lines:\n%s", proc.LogTail())
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("minio at %s not ready: %v; last log lines:\n%s", m.Endpoint, err, proc.LogTail())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (m *MinIO) launch(tb testing.TB) {
	args := []string{"server", filepath.Join(m.dir, "data"),
		"--address", m.Endpoint,
		"--console-address", m.console,
		"--quiet"}
	if m.CAFile != "" {
		args = append(args, "--certs-dir", filepath.Join(m.dir, "certs"))
	}
	cmd := exec.Command(m.bin, args...)
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
func (m *MinIO) Stop() { m.proc.Stop() }

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
		if m.proc.Exited() {
			tb.Fatalf("minio exited during restart; last log lines:\n%s", m.proc.LogTail())
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("minio at %s not ready after restart: %v; last log lines:\n%s", m.Endpoint, err, m.proc.LogTail())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Pause freezes the server (SIGSTOP): connections are accepted by the
// kernel but never answered, like a store behind a stalled network.
func (m *MinIO) Pause() { m.proc.Cmd.Process.Signal(syscall.SIGSTOP) }

// Resume lets a paused server go on (SIGCONT).
func (m *MinIO) Resume() { m.proc.Cmd.Process.Signal(syscall.SIGCONT) }
