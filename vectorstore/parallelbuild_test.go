package vectorstore_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/vectorstore"
)

// pgvector logs at DEBUG1 how many workers a parallel build launched; a
// serial build never says it.
var parallelWorkers = regexp.MustCompile(`using (\d+) parallel workers`)

const graphSpills = "hnsw graph no longer fits into maintenance_work_mem"

// serverLog returns what the server logged since the offset, and the new
// offset. The harness server writes its log beside its data directory.
func serverLog(t *testing.T, pg *harness.Postgres, from int) (string, int) {
	t.Helper()
	b, err := os.ReadFile(pg.Server.DataDir + ".log")
	if err != nil {
		t.Fatalf("server log: %v", err)
	}
	return string(b[from:]), len(b)
}

// TestIndexBuildsUseParallelWorkersAndFitInMemory builds HNSW indexes the
// two ways a store does, after a bulk load into an empty store and
// CONCURRENTLY on a store with rows, on the installed pgvector, and reads
// the server's log: pgvector says how many workers it launched, and
// whether the graph outgrew maintenance_work_mem. The table (20k x 128,
// about 13 MB) is large enough for PostgreSQL to plan a worker, and its
// graph (about 26 MB at m = 16) too large for the server's
// maintenance_work_mem, set to 16 MB to keep the test small. Controls:
// a plain CREATE INDEX at the server's settings spills out of memory on
// the same table, and with pgvector's version pretended older than 0.8.2
// the store builds serially.
func TestIndexBuildsUseParallelWorkersAndFitInMemory(t *testing.T) {
	version := harness.PgvectorVersion(t)
	if !vectorstore.ParallelHNSWBuildSafe(version) {
		t.Fatalf("installed pgvector %s predates 0.8.2: this test needs a version that builds in parallel (make deps)", version)
	}
	pg, pool := newDB(t)
	ctx := context.Background()
	admin := pg.Connect(t, "postgres")
	for _, q := range []string{"ALTER SYSTEM SET log_min_messages = debug1", "ALTER SYSTEM SET maintenance_work_mem = '16MB'", "SELECT pg_reload_conf()"} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	rows := uniform(20000, 128, 41)
	index := vectorstore.Index{Type: vectorstore.HNSW, M: 16, EfConstruction: 32}
	_, at := serverLog(t, pg, 0)
	expectParallel := func(what string) {
		t.Helper()
		var log string
		log, at = serverLog(t, pg, at)
		m := parallelWorkers.FindStringSubmatch(log)
		if m == nil || m[1] == "0" {
			t.Errorf("%s: pgvector %s logged no parallel workers", what, version)
		} else {
			t.Logf("%s: pgvector %s used %s parallel workers", what, version, m[1])
		}
		if strings.Contains(log, graphSpills) {
			t.Errorf("%s: the graph did not fit in maintenance_work_mem:\n%s", what, log)
		}
	}

	// After a bulk load into an empty store, inside the ingest.
	s := ensure(t, pool, vectorstore.Spec{Name: "bulk", Dimensions: 128, Index: index, Features: testFeatures})
	if res := ingestRows(t, s, rows); !res.IndexBuiltAfterLoad {
		t.Fatal("the index was not built after the bulk load")
	}
	expectParallel("ingest into an empty store")

	// CONCURRENTLY, when a store with rows gets its index.
	s = ensure(t, pool, vectorstore.Spec{Name: "live", Dimensions: 128, Index: vectorstore.Index{Type: vectorstore.NoIndex}, Features: testFeatures})
	ingestRows(t, s, rows)
	_, at = serverLog(t, pg, at)
	ensure(t, pool, vectorstore.Spec{Name: "live", Dimensions: 128, Index: index, Features: testFeatures})
	expectParallel("index added to a store with rows")

	// Control: the same build at the server's settings spills.
	conn := pg.Connect(t, "features")
	if _, err := conn.Exec(ctx, "CREATE INDEX plain_idx ON live USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 32)"); err != nil {
		t.Fatal(err)
	}
	if log, next := serverLog(t, pg, at); !strings.Contains(log, graphSpills) {
		t.Errorf("control: CREATE INDEX at the server's maintenance_work_mem did not spill, so the test cannot tell the store's setting matters")
	} else {
		at = next
	}

	// Control: on a pgvector pretended older than 0.8.2, serial.
	if _, err := conn.Exec(ctx, "UPDATE pg_extension SET extversion = '0.8.1' WHERE extname = 'vector'"); err != nil {
		t.Fatal(err)
	}
	s = ensure(t, pool, vectorstore.Spec{Name: "old", Dimensions: 128, Index: index, Features: testFeatures})
	ingestRows(t, s, rows)
	if log, _ := serverLog(t, pg, at); parallelWorkers.MatchString(log) {
		t.Errorf("with pgvector pretended 0.8.1, the build used parallel workers: %s", parallelWorkers.FindString(log))
	}
}
