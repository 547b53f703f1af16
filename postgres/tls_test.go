package postgres_test

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpostdata/outpost/postgres"
	"github.com/outpostdata/outpost/test/harness"
)

var serverNames = postgres.CertRequest{CommonName: "db", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}

func TestReissueWhenLessThanAThirdOfTheValidityRemains(t *testing.T) {
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	ca, err := postgres.NewCA("site", now)
	if err != nil {
		t.Fatal(err)
	}
	cert, _, err := ca.Issue(serverNames, now)
	if err != nil {
		t.Fatal(err)
	}
	if why := ca.Reissue(cert, serverNames, now.Add(200*24*time.Hour)); why != "" {
		t.Errorf("after 200 of 365 days: reissue because %q, want kept", why)
	}
	if why := ca.Reissue(cert, serverNames, now.Add(260*24*time.Hour)); !strings.HasPrefix(why, "expires ") {
		t.Errorf("after 260 of 365 days: %q, want reissued before it expires", why)
	}
	other := serverNames
	other.DNSNames = []string{"localhost", "db.example"}
	if why := ca.Reissue(cert, other, now); why != "issued for other names" {
		t.Errorf("names changed: %q", why)
	}
	stranger, _ := postgres.NewCA("other-site", now)
	foreign, _, _ := stranger.Issue(serverNames, now)
	if why := ca.Reissue(foreign, serverNames, now); why != "not signed by the site CA" {
		t.Errorf("certificate of another CA: %q", why)
	}
	if why := ca.Reissue(nil, serverNames, now); why == "" {
		t.Error("a missing certificate is kept")
	}
	if _, err := postgres.ParseCA(ca.CertPEM, stranger.KeyPEM()); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Errorf("CA with another CA's key: %v", err)
	}
}

// tlsServer starts a server with TLS from a fresh CA, and returns it with
// the CA and the directory holding the CA file.
func tlsServer(t *testing.T) (*postgres.Server, *postgres.CA, string) {
	t.Helper()
	dir := harness.TempDir(t)
	ca, err := postgres.NewCA("site", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue(serverNames, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	files, _, err := postgres.InstallTLS(filepath.Join(dir, "tls"), ca.CertPEM, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "run"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := postgres.OwnByServer(filepath.Join(dir, "run")); err != nil {
		t.Fatal(err)
	}
	srv := &postgres.Server{
		DataDir: filepath.Join(dir, "data"), Port: harness.FreePort(t), Password: postgres.GeneratePassword(),
		TLS: files, SocketDir: filepath.Join(dir, "run"),
	}
	ctx := context.Background()
	if err := srv.InitDB(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.WriteConfig(map[string]string{"fsync": "off"}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop(context.Background()) })
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, srv.URL("postgres"))
	if err != nil {
		t.Fatalf("superuser through the socket: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE ROLE app LOGIN PASSWORD 'app-pw'"); err != nil {
		t.Fatal(err)
	}
	return srv, ca, caFile
}

func psql(t *testing.T, uri, query string) (string, error) {
	t.Helper()
	cmd := exec.Command(harness.SystemBinary(t, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", uri, "-c", query)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=5")
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func TestTLSServerAdmitsVerifiedClientsAndRefusesPlainTCP(t *testing.T) {
	srv, ca, caFile := tlsServer(t)
	app := postgres.ConnURL{Host: "127.0.0.1", Port: srv.Port, User: "app", Password: "app-pw", Database: "postgres", RootCert: caFile}

	out, err := psql(t, app.String(), "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
	if err != nil || !strings.HasPrefix(out, "t|TLSv1.") {
		t.Fatalf("psql sslmode=verify-full with the site CA: %v\n%s", err, out)
	}
	// verify-full checks the name: localhost is in the certificate too.
	byName := app
	byName.Host = "localhost"
	if out, err := psql(t, byName.String(), "SELECT 1"); err != nil {
		t.Errorf("psql at localhost: %v\n%s", err, out)
	}

	// The control: the same role and password without TLS, over TCP on
	// loopback, is refused by pg_hba.conf.
	plain := app
	plain.RootCert = ""
	if out, err := psql(t, plain.String(), "SELECT 1"); err == nil || !strings.Contains(out, "no encryption") {
		t.Errorf("psql sslmode=disable over TCP: %v\n%s, want refused for want of encryption", err, out)
	}
	// A CA the server's certificate does not chain to fails verification.
	stranger, _ := postgres.NewCA("other-site", time.Now())
	strangerFile := filepath.Join(filepath.Dir(caFile), "stranger.crt")
	os.WriteFile(strangerFile, stranger.CertPEM, 0o644)
	wrongCA := app
	wrongCA.RootCert = strangerFile
	if out, err := psql(t, wrongCA.String(), "SELECT 1"); err == nil || !strings.Contains(out, "certificate verify failed") {
		t.Errorf("psql with another CA: %v\n%s", err, out)
	}

	// The superuser's password is no use over TCP, TLS or not ...
	super := app
	super.User, super.Password = postgres.Superuser, srv.Password
	if out, err := psql(t, super.String(), "SELECT 1"); err == nil || !strings.Contains(out, "certificate") {
		t.Errorf("superuser with its password over TLS: %v\n%s, want refused", err, out)
	}
	// ... only a client certificate the site CA signed for it is.
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		ca   *postgres.CA
		ok   bool
	}{{"site CA", ca, true}, {"other CA", stranger, false}} {
		cert, key, err := tc.ca.Issue(postgres.CertRequest{CommonName: postgres.Superuser, Client: true}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		withCert := super
		withCert.Password = ""
		withCert.ClientCert, withCert.ClientKey = filepath.Join(dir, tc.name+".crt"), filepath.Join(dir, tc.name+".key")
		os.WriteFile(withCert.ClientCert, cert, 0o600)
		os.WriteFile(withCert.ClientKey, key, 0o600)
		out, err := psql(t, withCert.String(), "SELECT current_user || ' ' || client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
		if ok := err == nil && out == "postgres /CN=postgres"; ok != tc.ok {
			t.Errorf("superuser with a client certificate of the %s: %v\n%s, want admitted = %v", tc.name, err, out, tc.ok)
		}
	}
}

func TestANewServerCertificateIsServedAfterAReload(t *testing.T) {
	srv, ca, caFile := tlsServer(t)
	ctx := context.Background()
	app := postgres.ConnURL{Host: "127.0.0.1", Port: srv.Port, User: "app", Password: "app-pw", Database: "postgres", RootCert: caFile}
	served := func() string {
		cfg, err := pgx.ParseConfig(app.String())
		if err != nil {
			t.Fatal(err)
		}
		var serial string
		verify := cfg.TLSConfig.VerifyConnection
		cfg.TLSConfig.VerifyConnection = func(cs tls.ConnectionState) error {
			serial = cs.PeerCertificates[0].SerialNumber.String()
			if verify != nil {
				return verify(cs)
			}
			return nil
		}
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatalf("connect with verify-full: %v", err)
		}
		conn.Close(ctx)
		return serial
	}
	before := served()
	cert, key, err := ca.Issue(serverNames, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, changed, err := postgres.InstallTLS(filepath.Dir(srv.TLS.CertFile), ca.CertPEM, cert, key); err != nil || !changed {
		t.Fatalf("install the new certificate: changed %v, %v", changed, err)
	}
	if err := srv.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if after := served(); after == before {
		t.Errorf("the server still serves certificate %s after a reload", before)
	}
}

func TestThePostmasterDoesNotInheritTheCallersSecrets(t *testing.T) {
	// An object store's keys in the controller's environment (credentials
	// fromEnvironment) must not reach the server, where a superuser reads
	// /proc/PID/environ with COPY ... TO PROGRAM.
	t.Setenv("AWS_SECRET_ACCESS_KEY", "planted-bucket-secret")
	srv, _, _ := tlsServer(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, srv.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TEMP TABLE env (line text)"); err != nil {
		t.Fatal(err)
	}
	for _, pid := range []string{strconv.Itoa(srv.PID()), "$PPID", "$$"} {
		if _, err := conn.Exec(ctx, "COPY env FROM PROGRAM 'tr ''\\0'' ''\\n'' < /proc/"+pid+"/environ'"); err != nil {
			t.Fatalf("read the environment of %s: %v", pid, err)
		}
	}
	var lines int
	var leaked bool
	if err := conn.QueryRow(ctx, "SELECT count(*), bool_or(line LIKE '%planted-bucket-secret%') FROM env").Scan(&lines, &leaked); err != nil {
		t.Fatal(err)
	}
	if lines == 0 || leaked {
		t.Errorf("%d environment lines read, the planted key among them: %v", lines, leaked)
	}
}
