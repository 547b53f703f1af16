package postgres

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestConnURLSaysTheSameToPgxAsItMeans(t *testing.T) {
	// pgx reads the files as it parses: real ones, in a directory with a
	// space (form encoding would write "+", which libpq keeps as is).
	dir := filepath.Join(t.TempDir(), "site ca")
	ca, err := NewCA("site", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue(CertRequest{CommonName: Superuser, Client: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	os.Mkdir(dir, 0o700)
	for name, data := range map[string][]byte{"ca.crt": ca.CertPEM, "su.crt": cert, "su.key": key} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	esc := strings.ReplaceAll(dir, " ", "%20")
	for _, tc := range []struct {
		name string
		c    ConnURL
		want string
	}{
		{"verify-full with a client certificate, paths with spaces",
			ConnURL{Host: "db.ns.svc", Port: 5432, User: "postgres", Database: "app", RootCert: dir + "/ca.crt", ClientCert: dir + "/su.crt", ClientKey: dir + "/su.key"},
			"postgres://postgres@db.ns.svc:5432/app?sslcert=" + esc + "/su.crt&sslkey=" + esc + "/su.key&sslmode=verify-full&sslrootcert=" + esc + "/ca.crt"},
		{"a socket never uses TLS",
			ConnURL{Host: "/run/pg", Port: 5433, User: "postgres", Password: "p:w@d", Database: "postgres", RootCert: "/ca.crt"},
			"postgres://postgres:p%3Aw%40d@/postgres?host=/run/pg&port=5433&sslmode=disable"},
		{"options and an IPv6 host",
			ConnURL{Host: "::1", Port: 5432, User: "app", Password: "a+b", Database: "app", Options: url.Values{"connect_timeout": {"2"}}},
			"postgres://app:a+b@[::1]:5432/app?connect_timeout=2&sslmode=disable"},
	} {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
		cfg, err := pgconn.ParseConfig(tc.c.String())
		if err != nil {
			t.Errorf("%s: pgx cannot parse it: %v", tc.name, err)
			continue
		}
		if cfg.User != tc.c.User || cfg.Password != tc.c.Password || cfg.Database != tc.c.Database || cfg.Host != tc.c.Host {
			t.Errorf("%s: pgx reads user %q password %q database %q host %q", tc.name, cfg.User, cfg.Password, cfg.Database, cfg.Host)
		}
		if verify := tc.c.RootCert != "" && !tc.c.Socket(); verify != (cfg.TLSConfig != nil && len(cfg.Fallbacks) == 0) {
			t.Errorf("%s: TLS config %v with fallbacks %d, want verify-full only = %v", tc.name, cfg.TLSConfig != nil, len(cfg.Fallbacks), verify)
		}
	}
}
