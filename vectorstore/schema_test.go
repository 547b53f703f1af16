package vectorstore_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpostdata/outpost/vectorstore"
)

func TestAddingAFeatureKeepsTheDataAndADimensionChangeIsRefused(t *testing.T) {
	_, pool := newDB(t)
	ctx := context.Background()
	spec := vectorstore.Spec{Name: "items", Dimensions: 8, Features: testFeatures}
	s := ensure(t, pool, spec)
	rows := clustered(300, 8, 3, 5)
	ingestRows(t, s, rows)

	spec.Features = append(append([]vectorstore.Feature(nil), testFeatures...), vectorstore.Feature{Name: "colour", Type: vectorstore.Text})
	_, res, err := vectorstore.Ensure(ctx, pool, spec, vectorstore.EnsureOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.AddedFeatures) != 1 || res.AddedFeatures[0] != "colour" {
		t.Errorf("added features %v, want [colour]", res.AddedFeatures)
	}
	var n int
	var colour *string
	if err := pool.QueryRow(ctx, "SELECT count(*), max(colour) FROM items WHERE category IS NOT NULL").Scan(&n, &colour); err != nil {
		t.Fatal(err)
	}
	if n != 300 || colour != nil {
		t.Errorf("after adding colour: %d rows with their features and colour %v, want 300 and NULL", n, colour)
	}
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM items_history WHERE colour IS NULL").Scan(&n); err != nil || n != 300 {
		t.Errorf("history view after adding colour: %d rows (%v), want 300 with a colour column", n, err)
	}

	spec.Dimensions = 16
	_, _, err = vectorstore.Ensure(ctx, pool, spec, vectorstore.EnsureOptions{})
	if !errors.Is(err, vectorstore.ErrDimensionsChanged) || !strings.Contains(err.Error(), "vector(8)") || !strings.Contains(err.Error(), "new feature store") {
		t.Errorf("dimension change: got %v, want ErrDimensionsChanged naming vector(8) and saying to create a new store", err)
	}
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil || n != 300 {
		t.Errorf("after the refused change: %d rows (%v), want 300", n, err)
	}
}

func TestChangedIndexParametersRebuildTheIndex(t *testing.T) {
	_, pool := newDB(t)
	ctx := context.Background()
	spec := vectorstore.Spec{Name: "items", Dimensions: 8, Features: testFeatures}
	s := ensure(t, pool, spec)
	ingestRows(t, s, clustered(500, 8, 3, 5))

	spec.Index = vectorstore.Index{Type: vectorstore.HNSW, M: 8, EfConstruction: 32}
	var phases []string
	s, res, err := vectorstore.Ensure(ctx, pool, spec, vectorstore.EnsureOptions{OnIndexProgress: func(p vectorstore.IndexProgress) {
		phases = append(phases, p.Phase)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.IndexRebuilt {
		t.Errorf("result %+v: want the index rebuilt", res)
	}
	var def string
	if err := pool.QueryRow(ctx, "SELECT pg_get_indexdef('items_embedding_idx'::regclass)").Scan(&def); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(def, "m='8'") || !strings.Contains(def, "ef_construction='32'") {
		t.Errorf("index after rebuild: %s, want m=8 ef_construction=32", def)
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.IndexState != vectorstore.IndexValid || st.Rows != 500 || st.PgvectorVersion == "" || st.IndexBytes == 0 {
		t.Errorf("stats %+v: want a valid index, 500 rows and the pgvector version", st)
	}
	if st.PgvectorVersion == "0.8.0" && st.ParallelHNSWBuild {
		t.Error("pgvector 0.8.0 reported as safe for parallel HNSW builds")
	}

	spec.Index = vectorstore.Index{Type: vectorstore.IVFFlat, Lists: 10}
	if _, _, err := vectorstore.Ensure(ctx, pool, spec, vectorstore.EnsureOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, "SELECT pg_get_indexdef('items_embedding_idx'::regclass)").Scan(&def); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(def, "USING ivfflat") {
		t.Errorf("index after switching to ivfflat: %s", def)
	}
	got, err := s.Search(ctx, []float32{1, 1, 1, 1, 1, 1, 1, 1}, vectorstore.SearchOptions{K: 5})
	if err != nil || len(got.Results) != 5 {
		t.Errorf("search on the swapped ivfflat index: %d rows, %v; want 5", len(got.Results), err)
	}
}

func TestParallelHNSWBuildSafeFromPgvector082(t *testing.T) {
	for v, want := range map[string]bool{"0.8.0": false, "0.8.1": false, "0.7.4": false, "0.8.2": true, "0.9.0": true, "1.0.0": true, "": false, "x": false} {
		if got := vectorstore.ParallelHNSWBuildSafe(v); got != want {
			t.Errorf("ParallelHNSWBuildSafe(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestReaderRoleCanSelectAndCannotWrite(t *testing.T) {
	pg, pool := newDB(t)
	ctx := context.Background()
	s := ensure(t, pool, vectorstore.Spec{Name: "items", Dimensions: 3, Features: testFeatures})
	ingestRows(t, s, []row{{Key: "a", Embedding: []float32{1, 2, 3}, EventTime: time.Now().Add(-time.Hour)}})
	if _, err := pool.Exec(ctx, "CREATE ROLE alice LOGIN PASSWORD 'alice-pw' IN ROLE "+vectorstore.DefaultReaderRole); err != nil {
		t.Fatal(err)
	}
	url := strings.Replace(pg.URL("features"), "postgres:"+pg.Server.Password, "alice:alice-pw", 1)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect as alice: %v", err)
	}
	defer conn.Close(ctx)
	var key string
	if err := conn.QueryRow(ctx, "SELECT key FROM items ORDER BY embedding <=> '[1,2,3]' LIMIT 1").Scan(&key); err != nil || key != "a" {
		t.Errorf("reader's plain SQL search: %q, %v; want a", key, err)
	}
	if err := conn.QueryRow(ctx, "SELECT key FROM items_history LIMIT 1").Scan(&key); err != nil {
		t.Errorf("reader cannot read history: %v", err)
	}
	var past int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM items_past").Scan(&past); err != nil {
		t.Errorf("reader cannot read past versions: %v", err)
	}
	for _, q := range []string{
		"INSERT INTO items (key, embedding, event_time) VALUES ('b', '[1,1,1]', now())",
		"UPDATE items SET category = 'x'",
		"DELETE FROM items",
		"TRUNCATE items_history",
		"DELETE FROM items_past",
		"INSERT INTO items_history (key, embedding, event_time) VALUES ('b', '[1,1,1]', now())",
		"CREATE TABLE public.mine (x int)",
		"SELECT * FROM outpost.feature_store_tables",
		"UPDATE outpost.feature_stores SET spec = spec",
	} {
		if _, err := conn.Exec(ctx, q); err == nil {
			t.Errorf("reader could run %q", q)
		}
	}
}

// pgvector indexes vector up to 2000 dimensions and halfvec up to 4000.
// Between 2000 and 4000 a vector store is indexed as halfvec; above 4000 an
// index is refused, naming the fields to change.
func TestDimensionLimitsOfIndexes(t *testing.T) {
	for _, c := range []struct {
		spec vectorstore.Spec
		ok   bool
	}{
		{vectorstore.Spec{Name: "a", Dimensions: 4001, Index: vectorstore.Index{Type: vectorstore.HNSW}}, false},
		{vectorstore.Spec{Name: "a", Dimensions: 4001, VectorType: vectorstore.HalfVec, Index: vectorstore.Index{Type: vectorstore.IVFFlat}}, false},
		{vectorstore.Spec{Name: "a", Dimensions: 4001, Index: vectorstore.Index{Type: vectorstore.NoIndex}}, true},
		{vectorstore.Spec{Name: "a", Dimensions: 16000, Index: vectorstore.Index{Type: vectorstore.NoIndex}}, true},
		{vectorstore.Spec{Name: "a", Dimensions: 16001, Index: vectorstore.Index{Type: vectorstore.NoIndex}}, false},
		{vectorstore.Spec{Name: "a", Dimensions: 4000, VectorType: vectorstore.HalfVec}, true},
		{vectorstore.Spec{Name: "a", Dimensions: 3000}, true},
	} {
		err := c.spec.Validate()
		if (err == nil) != c.ok {
			t.Errorf("%d dimensions, %s, index %s: got %v, want ok=%v", c.spec.Dimensions, c.spec.VectorType, c.spec.Index.Type, err, c.ok)
		}
		if err != nil && !strings.HasPrefix(err.Error(), fmt.Sprintf("dimensions %d:", c.spec.Dimensions)) {
			t.Errorf("error %q does not start by naming dimensions", err)
		}
		if err != nil && c.spec.Index.Type != vectorstore.NoIndex && !strings.Contains(err.Error(), "index.type") {
			t.Errorf("error %q does not name index.type", err)
		}
	}

	_, pool := newDB(t)
	ctx := context.Background()
	for _, c := range []struct {
		vt      vectorstore.VectorType
		dims    int
		indexed string
	}{
		{vectorstore.HalfVec, 4000, "USING hnsw (embedding halfvec_cosine_ops)"},
		{vectorstore.Vector, 3000, "USING hnsw (((embedding)::halfvec(3000)) halfvec_cosine_ops)"},
	} {
		name := fmt.Sprintf("wide_%s_%d", c.vt, c.dims)
		s := ensure(t, pool, vectorstore.Spec{Name: name, Dimensions: c.dims, VectorType: c.vt, Features: testFeatures})
		rows := clustered(50, c.dims, 3, 4)
		if res := ingestRows(t, s, rows); !res.IndexBuiltAfterLoad {
			t.Errorf("%s: %+v, want the index built after loading", name, res)
		}
		var def string
		if err := pool.QueryRow(ctx, "SELECT pg_get_indexdef(to_regclass($1))", name+"_embedding_idx").Scan(&def); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(def, c.indexed) {
			t.Errorf("%s: index %s, want %s", name, def, c.indexed)
		}
		res, err := s.Search(ctx, rows[7].Embedding, vectorstore.SearchOptions{K: 3})
		got := res.Results
		if err != nil || len(got) != 3 || got[0].Key != rows[7].Key {
			t.Errorf("%s: search for row 7 gave %d rows, first %v (%v); want 3, first %s", name, len(got), got, err, rows[7].Key)
		}
	}
}

// A store made when _history was a table of every version moves to the
// current layout on the next Ensure: superseded versions go to _past, the
// current ones stay only in the latest table, and _history becomes the view
// of both, with the same rows as before.
func TestEnsureMovesAnOldHistoryTableToThePastTable(t *testing.T) {
	_, pool := newDB(t)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `CREATE TABLE items (key text PRIMARY KEY, embedding vector(3) NOT NULL, category text,
	event_time timestamptz NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE items_history (key text NOT NULL, embedding vector(3) NOT NULL, category text,
	event_time timestamptz NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (key, event_time));
INSERT INTO items VALUES ('a', '[1,0,0]', 'new', now() - interval '1 hour'), ('b', '[0,1,0]', 'only', now() - interval '3 hours');
INSERT INTO items_history VALUES ('a', '[0,0,1]', 'old', now() - interval '2 hours');
INSERT INTO items_history SELECT * FROM items;
-- What the Outpost of that layout also wrote: the store's spec and its
-- comment on the table, by which the store is still known as Outpost's.
COMMENT ON TABLE items IS 'Outpost feature store items: latest values, one row per key';
CREATE SCHEMA outpost;
CREATE TABLE outpost.feature_stores (name text PRIMARY KEY, spec jsonb NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());
INSERT INTO outpost.feature_stores (name, spec) VALUES ('items', '{"name": "items", "dimensions": 3}')`)
	if err != nil {
		t.Fatal(err)
	}
	s := ensure(t, pool, vectorstore.Spec{Name: "items", Dimensions: 3, Features: []vectorstore.Feature{{Name: "category", Type: vectorstore.Text}}})
	var past, history []string
	if err := pool.QueryRow(ctx, `SELECT (SELECT array_agg(key || ':' || category ORDER BY key, event_time) FROM items_past),
	(SELECT array_agg(key || ':' || category ORDER BY key, event_time) FROM items_history)`).Scan(&past, &history); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(past, []string{"a:old"}) || !reflect.DeepEqual(history, []string{"a:old", "a:new", "b:only"}) {
		t.Errorf("after the move: past %v, history %v; want [a:old] and [a:old a:new b:only]", past, history)
	}
	got, err := s.Lookup(ctx, []string{"a"}, time.Now().Add(-90*time.Minute))
	if err != nil || got["a"].Features["category"] != "old" {
		t.Errorf("as-of lookup after the move: %+v, %v; want a as old", got, err)
	}
}
