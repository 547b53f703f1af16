package postgres_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outpostdata/outpost/postgres"
	"github.com/outpostdata/outpost/test/harness"
)

// fakeInstall is a bin directory whose pg_config points at a share
// directory holding vector.control of version (none when version is "").
func fakeInstall(t *testing.T, version string) string {
	t.Helper()
	dir := t.TempDir()
	share := filepath.Join(dir, "share")
	if err := os.MkdirAll(filepath.Join(share, "extension"), 0o755); err != nil {
		t.Fatal(err)
	}
	if version != "" {
		control := "comment = 'vector data type'\ndefault_version = '" + version + "'\nrelocatable = true\n"
		if err := os.WriteFile(filepath.Join(share, "extension", "vector.control"), []byte(control), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "pg_config"), []byte("#!/bin/sh\necho "+share+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// The managed settings file keeps every index build of the instance
// serial exactly while the installed pgvector is older than 0.8.2
// (CVE-2026-3172), and the guard wins over a user's parameter.
func TestConfigHoldsTheSerialBuildGuardWhilePgvectorIsOlderThan082(t *testing.T) {
	for _, tc := range []struct {
		installed string
		guarded   bool
	}{{"0.8.0", true}, {"0.8.1", true}, {"0.8.2", false}, {"0.8.7", false}, {"1.0.0", false}, {"", false}} {
		bin := fakeInstall(t, tc.installed)
		if got, err := postgres.InstalledPgvector(bin); err != nil || got != tc.installed {
			t.Fatalf("InstalledPgvector = %q, %v; want %q", got, err, tc.installed)
		}
		data := t.TempDir()
		srv := &postgres.Server{BinDir: bin, DataDir: data, Port: 5432}
		if err := srv.WriteConfig(map[string]string{"max_parallel_maintenance_workers": "4"}); err != nil {
			t.Fatal(err)
		}
		conf := readManagedConf(t, data)
		if guarded := strings.Contains(conf, "max_parallel_maintenance_workers = '0'"); guarded != tc.guarded {
			t.Errorf("pgvector %q: guard in the settings file = %v, want %v:\n%s", tc.installed, guarded, tc.guarded, conf)
		}
		if !tc.guarded && !strings.Contains(conf, "max_parallel_maintenance_workers = '4'") {
			t.Errorf("pgvector %q: the user's max_parallel_maintenance_workers is gone:\n%s", tc.installed, conf)
		}
	}
}

// readManagedConf returns the settings file WriteConfig wrote into data.
func readManagedConf(t *testing.T, data string) string {
	t.Helper()
	entries, _ := os.ReadDir(data)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".conf") {
			b, err := os.ReadFile(filepath.Join(data, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
	}
	t.Fatalf("WriteConfig wrote no .conf file into %s", data)
	return ""
}

// On the pgvector this machine has installed, a user's own CREATE INDEX
// ... USING hnsw (which Outpost does not build, and so cannot make serial
// per session) gets parallel workers only when the version is safe for them:
// pgvector says "using N parallel workers" at DEBUG1 when it launches them.
func TestUsersOwnHNSWBuildIsParallelOnlyOnASafePgvector(t *testing.T) {
	bin, err := postgres.BinDir(postgres.DefaultMajorVersion)
	if err != nil {
		t.Fatal(err)
	}
	installed, err := postgres.InstalledPgvector(bin)
	if err != nil || installed == "" {
		t.Fatalf("no pgvector installed for %s (%v): run `make deps`", bin, err)
	}
	safe := postgres.PgvectorBuildsInParallelSafely(installed)
	pg := harness.StartPostgres(t)
	ctx := context.Background()

	cfg, err := pgx.ParseConfig(pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var notices []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		defer mu.Unlock()
		notices = append(notices, n.Message)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var workers string
	if err := conn.QueryRow(ctx, "SHOW max_parallel_maintenance_workers").Scan(&workers); err != nil {
		t.Fatal(err)
	}
	if (workers == "0") == safe {
		t.Errorf("pgvector %s: max_parallel_maintenance_workers = %s in a new session", installed, workers)
	}
	// parallel_workers on the table lets a small table plan workers.
	for _, q := range []string{
		"CREATE EXTENSION vector",
		"CREATE TABLE items (id int, embedding vector(3)) WITH (parallel_workers = 2)",
		"INSERT INTO items SELECT i, ARRAY[random(), random(), random()]::vector FROM generate_series(1, 5000) i",
		"SET client_min_messages = debug1",
		"CREATE INDEX ON items USING hnsw (embedding vector_l2_ops)",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	mu.Lock()
	parallel := strings.Contains(strings.Join(notices, "\n"), "parallel workers")
	mu.Unlock()
	if parallel != safe {
		t.Errorf("pgvector %s: HNSW build used parallel workers = %v, want %v; notices:\n%s", installed, parallel, safe, strings.Join(notices, "\n"))
	}
	t.Logf("pgvector %s: max_parallel_maintenance_workers %s, parallel HNSW build %v", installed, workers, parallel)
}
