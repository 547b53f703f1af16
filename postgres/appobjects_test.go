package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/outpostdata/outpost/postgres"
	"github.com/outpostdata/outpost/test/harness"
)

func TestEnsureAppObjectsPutsRoleDatabasesAndExtensionsInPlace(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	want := postgres.AppObjects{Owner: "app", Password: postgres.GeneratePassword(),
		Databases: []string{"app", "more", "app"}, Extensions: []string{"vector"}}

	// Twice, as a runtime reconciles: the second pass changes nothing.
	for range 2 {
		v, err := pg.Server.EnsureAppObjects(ctx, want)
		if err != nil {
			t.Fatalf("EnsureAppObjects: %v", err)
		}
		if installed := harness.PgvectorVersion(t); v != installed {
			t.Errorf("EnsureAppObjects returned pgvector %q, want the installed %s", v, installed)
		}
	}
	for _, db := range []string{"app", "more"} {
		conn, err := pgx.Connect(ctx, pg.Server.RoleURL(want.Owner, want.Password, db))
		if err != nil {
			t.Fatalf("the role cannot log in to %s with its password: %v", db, err)
		}
		var owner, version string
		err = conn.QueryRow(ctx, "SELECT pg_get_userbyid(datdba), (SELECT extversion FROM pg_extension WHERE extname = 'vector') FROM pg_database WHERE datname = current_database()").Scan(&owner, &version)
		conn.Close(ctx)
		if err != nil {
			t.Fatalf("database %s: %v", db, err)
		}
		if owner != want.Owner || version == "" {
			t.Errorf("database %s is owned by %q with vector %q, want owned by app with vector", db, owner, version)
		}
	}

	v, err := pg.Server.EnsureAppObjects(ctx, postgres.AppObjects{Owner: "app", Password: want.Password, Databases: []string{"app"}})
	if err != nil || v != "" {
		t.Errorf("without vector among the extensions: pgvector %q, %v; want \"\" and no error", v, err)
	}
}
