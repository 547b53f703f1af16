package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/outpostdata/outpost/postgres"
	"github.com/outpostdata/outpost/test/harness"
)

func TestCheckExtensionsNamesTheExtensionOffTheAllowlist(t *testing.T) {
	if err := postgres.CheckExtensions(postgres.AllowedExtensions); err != nil {
		t.Fatalf("the allowlist itself was refused: %v", err)
	}
	err := postgres.CheckExtensions([]string{"vector", "plpython3u", "file_fdw"})
	want := `extension "plpython3u" is not on the allowlist (vector, pg_stat_statements, pgcrypto, pg_trgm, btree_gin, btree_gist, uuid-ossp, hstore, citext)`
	if err == nil || err.Error() != want {
		t.Fatalf("CheckExtensions = %v, want %q", err, want)
	}
}

func TestEnsureExtensionCreatesPgvectorOnce(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	conn := pg.Connect(t, "postgres")

	for range 2 {
		if err := postgres.EnsureExtension(ctx, conn, "vector"); err != nil {
			t.Fatalf("EnsureExtension(vector): %v", err)
		}
	}
	version, err := postgres.ExtensionVersion(ctx, conn, "vector")
	if err != nil {
		t.Fatal(err)
	}
	if want := harness.PgvectorVersion(t); version != want {
		t.Errorf("ExtensionVersion(vector) = %q, want the installed %s", version, want)
	}
	if _, err := conn.Exec(ctx, "SELECT '[1,2,3]'::vector <-> '[1,2,4]'::vector"); err != nil {
		t.Errorf("vector type unusable after EnsureExtension: %v", err)
	}
	// uuid-ossp needs quoting: the name has a dash.
	if err := postgres.EnsureExtension(ctx, conn, "uuid-ossp"); err != nil {
		t.Fatalf("EnsureExtension(uuid-ossp): %v", err)
	}
	if v, _ := postgres.ExtensionVersion(ctx, conn, "uuid-ossp"); v == "" {
		t.Error("uuid-ossp not created")
	}
}

func TestEnsureExtensionRefusesExtensionsOffTheAllowlist(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	conn := pg.Connect(t, "postgres")

	for _, name := range []string{"plpython3u", "file_fdw", "adminpack"} {
		err := postgres.EnsureExtension(ctx, conn, name)
		if err == nil || !strings.Contains(err.Error(), `extension "`+name+`" is not on the allowlist`) {
			t.Errorf("EnsureExtension(%s) = %v, want refused by name", name, err)
		}
		if v, err := postgres.ExtensionVersion(ctx, conn, name); err != nil || v != "" {
			t.Errorf("ExtensionVersion(%s) = %q, %v; want it absent", name, v, err)
		}
	}
}
