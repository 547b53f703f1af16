package vectorstore_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/vectorstore"
)

// appDB starts PostgreSQL as Outpost provisions it: a login role "app"
// owning database "features", in which the superuser created pgvector.
// It returns the server and the app role's password.
func appDB(t *testing.T) (*harness.Postgres, string) {
	t.Helper()
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	admin := pg.Connect(t, "postgres")
	const password = "app-pw"
	for _, q := range []string{
		"CREATE ROLE app LOGIN PASSWORD '" + password + "'",
		"CREATE DATABASE features OWNER app",
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pg.Connect(t, "features").Exec(ctx, "CREATE EXTENSION vector"); err != nil {
		t.Fatal(err)
	}
	return pg, password
}

// readmeURL is the README's Go connection string for a role, on the test
// server's port.
func readmeURL(pg *harness.Postgres, role, password string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/features", role, password, pg.Server.Port)
}

// The controller (the superuser) shapes the store; the application role
// and a login role in the read-only role then use the Go API exactly as
// the README shows: Connect with the README's URL, Open, Search. The app
// role also ingests; the reader may only query.
func TestGoAPIWorksForTheAppRoleAndTheReadOnlyRole(t *testing.T) {
	pg, appPassword := appDB(t)
	ctx := context.Background()
	super, err := vectorstore.Connect(ctx, pg.URL("features"))
	if err != nil {
		t.Fatal(err)
	}
	defer super.Close()
	spec := vectorstore.Spec{Name: "products", Dimensions: 3, Features: testFeatures}
	ensure(t, super, spec)
	if _, err := super.Exec(ctx, "CREATE ROLE analyst LOGIN PASSWORD 'analyst-pw' IN ROLE "+vectorstore.DefaultReaderRole); err != nil {
		t.Fatal(err)
	}

	rows := []row{
		{Key: "p1", Embedding: []float32{0.1, 0.9, 0.2}, EventTime: time.Now().Add(-time.Hour), Category: "shoes"},
		{Key: "p2", Embedding: []float32{0.9, 0.1, 0.2}, EventTime: time.Now().Add(-time.Hour), Category: "hats"},
	}
	file := filepath.Join(t.TempDir(), "products.parquet")
	writeParquet(t, file, rows)

	app := openAs(t, readmeURL(pg, "app", appPassword))
	if _, err := app.IngestFile(ctx, file, vectorstore.IngestOptions{}); err != nil {
		t.Fatalf("app role ingest: %v", err)
	}
	checkSearch(t, "app", app)

	analyst := openAs(t, readmeURL(pg, "analyst", "analyst-pw"))
	checkSearch(t, "analyst", analyst)
	// The reader may only query: an ingest is refused by the server, and
	// nothing changes.
	more := filepath.Join(t.TempDir(), "more.parquet")
	writeParquet(t, more, []row{{Key: "p3", Embedding: []float32{1, 1, 1}, EventTime: time.Now().Add(-time.Minute)}})
	_, err = analyst.IngestFile(ctx, more, vectorstore.IngestOptions{})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Errorf("reader's ingest: %v, want permission denied (42501)", err)
	}
	var n int
	if err := super.QueryRow(ctx, "SELECT count(*) FROM products").Scan(&n); err != nil || n != 2 {
		t.Errorf("after the reader's refused ingest: %d rows, %v; want 2", n, err)
	}
	readerPool, err := vectorstore.Connect(ctx, readmeURL(pg, "analyst", "analyst-pw"))
	if err != nil {
		t.Fatal(err)
	}
	defer readerPool.Close()
	if _, _, err := vectorstore.Ensure(ctx, readerPool, vectorstore.Spec{Name: "products", Dimensions: 3, Features: append(testFeatures, vectorstore.Feature{Name: "extra", Type: vectorstore.Text})}, vectorstore.EnsureOptions{}); err == nil {
		t.Error("the reader could reshape the store with Ensure")
	}
	for _, q := range []string{
		"UPDATE outpost.feature_stores SET spec = '{}'",
		"DELETE FROM outpost.feature_stores",
		"SELECT * FROM outpost.feature_store_tables",
		"CREATE TABLE outpost.mine (x int)",
		"UPDATE outpost.search_tuning SET tuning = '{}'",
		"DELETE FROM outpost.search_tuning",
	} {
		if _, err := readerPool.Exec(ctx, q); err == nil {
			t.Errorf("reader could run %q", q)
		}
	}

	// A role that cannot read the measured search defaults (a grant taken
	// back by hand) still searches, with the defaults before any
	// measurement, instead of failing every unfiltered search.
	if _, err := super.Exec(ctx, "REVOKE SELECT ON outpost.search_tuning FROM "+vectorstore.DefaultReaderRole); err != nil {
		t.Fatal(err)
	}
	if _, err := openAs(t, readmeURL(pg, "analyst", "analyst-pw")).Search(ctx, []float32{0.1, 0.9, 0.2}, vectorstore.SearchOptions{K: 1}); err != nil {
		t.Errorf("unfiltered search by a role that cannot read outpost.search_tuning: %v", err)
	}
}

func openAs(t *testing.T, url string) *vectorstore.Store {
	t.Helper()
	ctx := context.Background()
	pool, err := vectorstore.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(pool.Close)
	s, err := vectorstore.Open(ctx, pool, "products")
	if err != nil {
		t.Fatalf("open products with %s: %v", url, err)
	}
	return s
}

func checkSearch(t *testing.T, who string, s *vectorstore.Store) {
	t.Helper()
	f, err := s.ParseFilter("category = shoes")
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Search(context.Background(), []float32{0.1, 0.9, 0.2}, vectorstore.SearchOptions{K: 10, Filters: []vectorstore.Filter{f}})
	if err != nil {
		t.Fatalf("%s: search: %v", who, err)
	}
	if len(res.Results) != 1 || res.Results[0].Key != "p1" {
		t.Errorf("%s: search = %+v, want p1 only", who, res)
	}
}
