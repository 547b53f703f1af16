package harness

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	pgxvec "github.com/pgvector/pgvector-go/pgx"

	"github.com/outpostdata/outpost/postgres"
)

// Postgres is a throwaway PostgreSQL 15 server with pgvector available.
type Postgres struct {
	Server *postgres.Server
}

// StartPostgres initialises and starts a PostgreSQL server in a temporary
// directory on a free loopback port, and stops it when the test ends.
func StartPostgres(tb testing.TB) *Postgres {
	tb.Helper()
	bin, err := postgres.BinDir(postgres.DefaultMajorVersion)
	if err != nil {
		tb.Fatal(err)
	}
	dir := TempDir(tb)
	srv := &postgres.Server{
		BinDir:   bin,
		DataDir:  filepath.Join(dir, "data"),
		Port:     FreePort(tb),
		Password: postgres.GeneratePassword(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := srv.InitDB(ctx); err != nil {
		tb.Fatal(err)
	}
	// The port was free when FreePort looked, but tests running alongside
	// (their listeners, their outgoing connections) can take it before the
	// server binds it, initdb's seconds later: that is no failure of the
	// test, so the server is started again on another port.
	for attempt := 1; ; attempt++ {
		if err := srv.WriteConfig(map[string]string{"fsync": "off"}); err != nil {
			tb.Fatal(err)
		}
		err := srv.Start(ctx)
		if err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(err.Error(), "Address already in use") {
			tb.Fatal(err)
		}
		tb.Logf("port %d was taken before postgres bound it; starting it again on another: %v", srv.Port, err)
		srv.Port = FreePort(tb)
	}
	tb.Cleanup(func() {
		if err := srv.Stop(context.Background()); err != nil {
			tb.Errorf("stop postgres: %v", err)
		}
	})
	return &Postgres{Server: srv}
}

// URL returns a superuser connection URI for a database.
func (p *Postgres) URL(database string) string { return p.Server.URL(database) }

// Connect opens a superuser connection to a database, closed when the test
// ends. When the vector extension exists in that database, pgvector's types
// are registered on the connection.
func (p *Postgres) Connect(tb testing.TB, database string) *pgx.Conn {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, p.URL(database))
	if err != nil {
		tb.Fatalf("connect to %s: %v", database, err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	var hasVector bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector')").Scan(&hasVector); err != nil {
		tb.Fatalf("check for pgvector: %v", err)
	}
	if hasVector {
		if err := pgxvec.RegisterTypes(ctx, conn); err != nil {
			tb.Fatalf("register pgvector types: %v", err)
		}
	}
	return conn
}
