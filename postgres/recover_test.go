package postgres_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpostdata/outpost/test/harness"
)

// A recovered server that runs but cannot read its own catalogs (here a
// page of pg_class whose checksum no longer matches) never gets better:
// Recover says so at once, naming the damage, instead of waiting until its
// context ends while the server refuses every connection.
func TestRecoverFailsAtOnceWhenTheRecoveredServerCannotReadItsCatalogs(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	var rel string
	if err := pg.Connect(t, "postgres").QueryRow(ctx, "SELECT pg_relation_filepath('pg_class')").Scan(&rel); err != nil {
		t.Fatal(err)
	}
	srv := sameServer(pg)
	if err := pg.Server.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// One flipped byte in the middle of the first page breaks its checksum.
	f, err := os.OpenFile(filepath.Join(pg.Server.DataDir, rel), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, 4000); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, 4000); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	// The deadline is far beyond what a failing recovery needs; reaching it
	// is the failure this test is about.
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err = srv.Recover(rctx, map[string]string{"restore_command": "false"})
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "cannot read its data") || !strings.Contains(err.Error(), "XX001") {
		t.Fatalf("Recover of a server with a damaged catalog page: %v, want an immediate error naming the damage (SQLSTATE XX001)", err)
	}
}
