package usageexport_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/usageexport"
)

var dbSeq atomic.Int64

// newLedgerDB creates a fresh database on pg with the ledger schema, as
// controldb would have it.
func newLedgerDB(t testing.TB, pg *harness.Postgres) (*pgxpool.Pool, string) {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("ledger%d", dbSeq.Add(1))
	conn, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, pg.URL(name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := usageexport.EnsureSchema(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return pool, pg.URL(name)
}

func newKey(t testing.TB) usageexport.SigningKey {
	t.Helper()
	k, err := usageexport.LoadOrCreateKey(filepath.Join(t.TempDir(), "usage.key"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func shape(milliVCores int64) usageexport.Shape {
	return usageexport.Shape{MilliVCores: milliVCores, MemoryBytes: 4 << 30, StorageBytes: 20 << 30, Labels: map[string]string{"team": "plant"}}
}

func instance(uid, name string) usageexport.Instance {
	return usageexport.Instance{UID: uid, Kind: "PostgresInstance", Namespace: "default", Name: name}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
