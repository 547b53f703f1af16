package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/outpostdata/outpost/postgres"
	"github.com/outpostdata/outpost/test/harness"
)

func TestEnsureRoleAndDatabaseLetTheRoleLogInToItsDatabase(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	conn := pg.Connect(t, "postgres")
	password := postgres.GeneratePassword()

	// Twice, as a controller reconciles: the second call changes nothing.
	for range 2 {
		if err := postgres.EnsureRole(ctx, conn, "app", password); err != nil {
			t.Fatalf("EnsureRole: %v", err)
		}
		if err := postgres.EnsureDatabase(ctx, conn, "appdb", "app"); err != nil {
			t.Fatalf("EnsureDatabase: %v", err)
		}
	}
	var stored string
	if err := conn.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'").Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stored, "SCRAM-SHA-256$4096:") {
		t.Errorf("stored password %q is not a SCRAM-SHA-256 verifier", stored)
	}
	if err := postgres.EnsureRole(ctx, conn, "app", password); err != nil {
		t.Fatal(err)
	}
	var again string
	if err := conn.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'").Scan(&again); err != nil {
		t.Fatal(err)
	}
	if again != stored {
		t.Error("EnsureRole with the same password rewrote the role's password")
	}

	app, err := pgx.Connect(ctx, pg.Server.RoleURL("app", password, "appdb"))
	if err != nil {
		t.Fatalf("the role cannot log in to its database with its password: %v", err)
	}
	defer app.Close(ctx)
	// Owning the database, the role can create tables in it (PostgreSQL 15
	// no longer lets everyone create in public).
	if _, err := app.Exec(ctx, "CREATE TABLE features (id int PRIMARY KEY)"); err != nil {
		t.Errorf("the owner cannot create a table in its database: %v", err)
	}
	var user, db string
	if err := app.QueryRow(ctx, "SELECT current_user, current_database()").Scan(&user, &db); err != nil {
		t.Fatal(err)
	}
	if user != "app" || db != "appdb" {
		t.Errorf("connected as %s to %s, want app to appdb", user, db)
	}

	if _, err := pgx.Connect(ctx, pg.Server.RoleURL("app", "wrong-"+password, "appdb")); err == nil {
		t.Error("the role logged in with a wrong password")
	}
}

func TestEnsureRoleChangesThePassword(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	conn := pg.Connect(t, "postgres")
	if err := postgres.EnsureRole(ctx, conn, "app", "first-password"); err != nil {
		t.Fatal(err)
	}
	if err := postgres.EnsureRole(ctx, conn, "app", "second-password"); err != nil {
		t.Fatal(err)
	}
	if c, err := pgx.Connect(ctx, pg.Server.RoleURL("app", "first-password", "postgres")); err == nil {
		c.Close(ctx)
		t.Error("the old password still works")
	}
	c, err := pgx.Connect(ctx, pg.Server.RoleURL("app", "second-password", "postgres"))
	if err != nil {
		t.Fatalf("the new password does not work: %v", err)
	}
	c.Close(ctx)
}

func TestEnsureRoleHandlesAwkwardNamesAndPasswords(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	conn := pg.Connect(t, "postgres")
	for _, tc := range []struct{ role, password string }{
		{`Mixed "Quoted" Role`, `it's a \ pass'word`},
		{"unicode", "pässwörd-ñ"},
	} {
		if err := postgres.EnsureRole(ctx, conn, tc.role, tc.password); err != nil {
			t.Fatalf("EnsureRole(%q): %v", tc.role, err)
		}
		if err := postgres.EnsureRole(ctx, conn, tc.role, tc.password); err != nil {
			t.Fatalf("EnsureRole(%q) again: %v", tc.role, err)
		}
		c, err := pgx.Connect(ctx, pg.Server.RoleURL(tc.role, tc.password, "postgres"))
		if err != nil {
			t.Errorf("role %q cannot log in with its password: %v", tc.role, err)
			continue
		}
		c.Close(ctx)
	}
}

func TestEnsureDatabaseHandsAnExistingDatabaseToItsOwner(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	conn := pg.Connect(t, "postgres")
	for _, role := range []string{"first", "second"} {
		if err := postgres.EnsureRole(ctx, conn, role, postgres.GeneratePassword()); err != nil {
			t.Fatal(err)
		}
	}
	if err := postgres.EnsureDatabase(ctx, conn, "shared", "first"); err != nil {
		t.Fatal(err)
	}
	if err := postgres.EnsureDatabase(ctx, conn, "shared", "second"); err != nil {
		t.Fatal(err)
	}
	var owner string
	if err := conn.QueryRow(ctx, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shared'").Scan(&owner); err != nil {
		t.Fatal(err)
	}
	if owner != "second" {
		t.Errorf("owner = %s, want second", owner)
	}
	err := postgres.EnsureDatabase(ctx, conn, "orphan", "no_such_role")
	if err == nil || !strings.Contains(err.Error(), `"orphan"`) || !strings.Contains(err.Error(), `"no_such_role"`) {
		t.Errorf("EnsureDatabase with a missing owner = %v, want an error naming both", err)
	}
}
