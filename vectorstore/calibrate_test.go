package vectorstore_test

import (
	"context"
	"testing"

	"github.com/outpostdata/outpost/vectorstore"
)

// The search defaults are measured on each store's own data when its index
// is built. On clustered data the graph finds the true neighbours at a
// small ef_search, and searches at the defaults use it; on uniformly random
// 128-dimensional data a sparse graph (m 2) finds few of them even at 1000,
// the most pgvector allows, and searches at the defaults rank exactly
// instead. The control asks that graph for 1000 candidates explicitly: its
// recall is what the defaults would have given without the measurement.
func TestSearchDefaultsAreMeasuredOnTheStoresOwnData(t *testing.T) {
	_, pool := newDB(t)
	ctx := context.Background()

	t.Run("clustered", func(t *testing.T) {
		rows, queries := split(clustered(20000, 48, 50, 3), 500)
		s := ensure(t, pool, vectorstore.Spec{Name: "clustered", Dimensions: 48, Index: vectorstore.Index{Type: vectorstore.HNSW}, Features: testFeatures})
		res := ingestRows(t, s, rows[:9000])
		if res.Tuning == nil || res.Tuning.Exact() || res.Tuning.Recall < 0.97 || res.Tuning.Knob != "hnsw.ef_search" {
			t.Fatalf("tuning after the first ingest: %+v, want an ef_search reaching 0.97", res.Tuning)
		}
		t.Logf("measured: %+v", *res.Tuning)
		if got, ok, err := s.Tuning(ctx); err != nil || !ok || got.Value != res.Tuning.Value {
			t.Fatalf("recorded tuning: %+v %v %v, want %+v", got, ok, err, *res.Tuning)
		}
		// A small ingest keeps the measurement; doubling the rows takes a
		// new one.
		if again := ingestRows(t, s, rows[:100]); again.Tuning != nil {
			t.Errorf("an ingest of 100 rows into 9,000 measured again: %+v", *again.Tuning)
		}
		if grown := ingestRows(t, s, rows[9000:]); grown.Tuning == nil || grown.Tuning.Rows < int64(len(rows))-10 {
			t.Errorf("an ingest that doubled the store kept the old measurement: %+v", grown.Tuning)
		}
		if r := recall(t, s, rows, queries, 0); r < 0.95 {
			t.Errorf("recall@10 at the defaults = %.3f, want at least 0.95", r)
		}
		expectPath(t, s, queries[0].Embedding, vectorstore.SearchOptions{}, vectorstore.PathHNSW, 10)
	})

	t.Run("uniform_sparse_graph", func(t *testing.T) {
		rows, queries := split(uniform(20000, 128, 4), 500)
		s := ensure(t, pool, vectorstore.Spec{Name: "uniform_sparse", Dimensions: 128, Index: vectorstore.Index{Type: vectorstore.HNSW, M: 2, EfConstruction: 4}, Features: testFeatures})
		res := ingestRows(t, s, rows)
		if res.Tuning == nil || !res.Tuning.Exact() {
			t.Fatalf("tuning: %+v, want no ef_search reaching the target", res.Tuning)
		}
		t.Logf("measured: %+v", *res.Tuning)
		if r := recall(t, s, rows, queries, 0); r != 1 {
			t.Errorf("recall@10 at the defaults = %.3f, want 1 (exact)", r)
		}
		expectPath(t, s, queries[0].Embedding, vectorstore.SearchOptions{}, vectorstore.PathExact, 10)
		// Control: the index itself, asked explicitly.
		if r := recall(t, s, rows, queries, 1000); r >= 0.95 {
			t.Errorf("recall@10 of the sparse graph at ef_search 1000 = %.3f: the data is not hard enough to show anything", r)
		}
		expectPath(t, s, queries[0].Embedding, vectorstore.SearchOptions{EfSearch: 1000}, vectorstore.PathHNSW, 10)
	})

	t.Run("index_added_and_dropped", func(t *testing.T) {
		rows, _ := split(clustered(5000, 16, 20, 9), 500)
		spec := vectorstore.Spec{Name: "later_index", Dimensions: 16, Index: vectorstore.Index{Type: vectorstore.NoIndex}, Features: testFeatures}
		s := ensure(t, pool, spec)
		if res := ingestRows(t, s, rows); res.Tuning != nil {
			t.Fatalf("a store without an index measured %+v", *res.Tuning)
		}
		// An index added to a store that has rows is measured as Ensure
		// builds it.
		spec.Index = vectorstore.Index{Type: vectorstore.HNSW}
		s, res, err := vectorstore.Ensure(ctx, pool, spec, vectorstore.EnsureOptions{})
		if err != nil || !res.IndexBuilt || res.TuningError != nil {
			t.Fatalf("ensure with an index added: %+v %v", res, err)
		}
		if got, ok, err := s.Tuning(ctx); err != nil || !ok || got.Rows != int64(len(rows)) {
			t.Fatalf("tuning after the index was added: %+v %v %v", got, ok, err)
		}
		// Dropped, the measurement goes with it: the same index built
		// again later is measured on the data it then holds.
		spec.Index = vectorstore.Index{Type: vectorstore.NoIndex}
		ensure(t, pool, spec)
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM outpost.search_tuning WHERE name = $1", spec.Name).Scan(&n); err != nil || n != 0 {
			t.Fatalf("search_tuning rows of a store whose index was dropped: %d %v", n, err)
		}
	})
}
