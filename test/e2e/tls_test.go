package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/outpostdata/outpost/controller/localruntime"
	"github.com/outpostdata/outpost/postgres"
)

// On one host every instance serves TLS with a certificate from the site
// CA in the state directory, and psql verifies it as `outpost up` says.
func TestSingleHostInstanceServesTLSVerifiedWithTheSiteCA(t *testing.T) {
	s := newSite(t)
	s.start()
	caFile := filepath.Join(s.stateDir, "tls", "ca.crt")
	printed := s.psqlCommand("example")
	if !strings.Contains(printed, "sslmode=verify-full") || !strings.Contains(printed, "sslrootcert="+caFile) {
		t.Errorf("outpost up printed %q, want sslmode=verify-full and sslrootcert=%s", printed, caFile)
	}
	out, err := runShell(printed + ` -X -A -t -c "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"`)
	if err != nil || lastLine(out) != "t" {
		t.Fatalf("the printed psql command with verify-full: %v\n%s", err, out)
	}
	if desc := s.outpost("describe", "pgi/example"); !strings.Contains(desc, "CA file:") || !strings.Contains(desc, caFile) {
		t.Errorf("outpost describe does not show the CA file %s:\n%s", caFile, desc)
	}

	// The control: the same credentials without TLS over TCP are refused.
	dir := filepath.Join(s.stateDir, "instances", "default", "example")
	creds, err := localruntime.ReadCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	plain := strings.Replace(printed, "sslmode=verify-full", "sslmode=disable", 1)
	if out, err := runShell(plain + ` -X -c "SELECT 1"`); err == nil || !strings.Contains(out, "no encryption") {
		t.Errorf("psql with sslmode=disable over TCP: %v\n%s, want refused", err, out)
	}
	// The secrets are split: the application's file has no superuser
	// password; the superuser's file and the CA key are private.
	raw, _ := os.ReadFile(localruntime.CredentialsFile(dir))
	var fields map[string]any
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}
	if _, ok := fields["superuserPassword"]; ok || creds.URI() == "" || !strings.Contains(creds.URI(), "sslmode=verify-full") {
		t.Errorf("credentials.json = %s, want the app's URI with verify-full and no superuser password", raw)
	}
	for _, f := range []string{localruntime.SuperuserFile(dir), filepath.Join(s.stateDir, "tls", "ca.key")} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v, want 0600", f, err, fi.Mode().Perm())
		}
	}

	// The superuser's password works on the socket only, and no TCP
	// connection to the instance runs without TLS.
	superURL, err := localruntime.SuperuserURL(dir, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, superURL)
	if err != nil {
		t.Fatalf("superuser on the socket: %v", err)
	}
	defer conn.Close(ctx)
	password, err := localruntime.ReadSuperuser(dir)
	if err != nil {
		t.Fatal(err)
	}
	super := postgres.ConnURL{Host: creds.Host, Port: creds.Port, User: postgres.Superuser, Password: password, Database: "postgres", RootCert: caFile}
	if c, err := pgx.Connect(ctx, super.String()); err == nil || !strings.Contains(err.Error(), "certificate") {
		if c != nil {
			c.Close(ctx)
		}
		t.Errorf("superuser with its password over TCP and TLS: %v, want refused", err)
	}
	var plainTCP int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl USING (pid)
		WHERE a.client_addr IS NOT NULL AND NOT ssl`).Scan(&plainTCP); err != nil || plainTCP != 0 {
		t.Errorf("TCP connections without TLS: %d (%v), want 0", plainTCP, err)
	}
}
