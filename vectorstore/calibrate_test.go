package vectorstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
	pg, pool := newDB(t)
	ctx := context.Background()

	t.Run("clustered", func(t *testing.T) {
		rows, queries := split(clustered(20000, 48, 50, 3), 500)
		s := ensure(t, pool, vectorstore.Spec{Name: "clustered", Dimensions: 48, Index: vectorstore.Index{Type: vectorstore.HNSW}, Features: testFeatures})
		res := ingestRows(t, s, rows[:9000])
		if res.Tuning == nil || res.Tuning.Exact() || res.Tuning.Recall < 0.98 || res.Tuning.Knob != "hnsw.ef_search" {
			t.Fatalf("tuning after the first ingest: %+v, want an ef_search reaching 0.98", res.Tuning)
		}
		t.Logf("measured: %+v", *res.Tuning)
		if !res.Tuning.FilteredMeasured || !res.Tuning.FilteredExact() && res.Tuning.FilteredRecall < 0.98 {
			t.Errorf("filtered searches after the first ingest: %+v, want measured, reaching 0.98 or ranked exactly", *res.Tuning)
		}
		if got, ok, err := s.Tuning(ctx); err != nil || !ok || got.Value != res.Tuning.Value || got.FilteredValue != res.Tuning.FilteredValue {
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
		// Through the iterative scan the sparse graph misses as many:
		// filtered searches at the defaults rank exactly too, and an
		// explicit ef_search still walks the graph.
		if !res.Tuning.FilteredExact() {
			t.Fatalf("filtered tuning: %+v, want no ef_search reaching the target", *res.Tuning)
		}
		rare := []vectorstore.Filter{filter(t, s, "category = rare")}
		expectPath(t, s, queries[0].Embedding, vectorstore.SearchOptions{Filters: rare}, vectorstore.PathExact, 10)
		// (At 1000 PostgreSQL costs the graph above a scan, and scans.)
		expectPath(t, s, queries[0].Embedding, vectorstore.SearchOptions{Filters: rare, EfSearch: 40}, vectorstore.PathHNSWIterative, 10)
	})

	t.Run("too_few_rows_for_the_sample_filter", func(t *testing.T) {
		// About 1 row in 128 passes the sample filter: 600 rows hold
		// fewer than 10, so filtered searches are not measured, and
		// the record says why. (What an unmeasured tuning does to
		// searches is the next test's: on a table this small
		// PostgreSQL scans it for any filter.)
		rows, _ := split(clustered(600, 16, 10, 12), 100)
		s := ensure(t, pool, vectorstore.Spec{Name: "few_rows", Dimensions: 16, Index: vectorstore.Index{Type: vectorstore.HNSW}, Features: testFeatures})
		res := ingestRows(t, s, rows)
		if res.Tuning == nil || res.Tuning.FilteredMeasured || !strings.Contains(res.Tuning.FilteredUnmeasured, "fewer than 10") {
			t.Fatalf("tuning: %+v, want filtered searches unmeasured for too few rows", res.Tuning)
		}
	})

	t.Run("filtered_measurement_fails", func(t *testing.T) {
		// The server cancels the filtered measurement's first query (an
		// administrator's pg_cancel_backend, a statement timeout): the
		// unfiltered measurement is recorded all the same, and the
		// record says why filtered searches were not measured. Had the
		// cancel not landed, they would have been (the first subtest):
		// the test fails rather than pass without the fault.
		rows, _ := split(clustered(20000, 48, 50, 21), 500)
		s := ensure(t, pool, vectorstore.Spec{Name: "filtered_fails", Dimensions: 48, Index: vectorstore.Index{Type: vectorstore.HNSW}, Features: testFeatures})
		// A superuser sees every session's query. A cancel that reaches
		// a session between statements is lost, so every one seen is
		// cancelled until the ingest returns. CASE keeps the watcher from
		// cancelling itself: its own text matches too, and PostgreSQL
		// orders a WHERE clause's conditions as it likes.
		admin := pg.Connect(t, "postgres")
		watch, cancel := context.WithCancel(ctx)
		var seen []string
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			for watch.Err() == nil {
				var query string
				err := admin.QueryRow(watch, `SELECT query FROM pg_stat_activity
					WHERE query LIKE '%hashtext(key) & 127%' AND state = 'active'
					AND CASE WHEN pid = pg_backend_pid() THEN false ELSE pg_cancel_backend(pid) END
					LIMIT 1`).Scan(&query)
				switch {
				case err == nil:
					seen = append(seen, query)
				case errors.Is(err, pgx.ErrNoRows):
					time.Sleep(time.Millisecond)
				default:
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
		// Registered after Connect's cleanup, so run before it: the
		// watcher is gone before its connection closes, whatever ends
		// the test.
		stop := func() { cancel(); <-stopped }
		t.Cleanup(stop)
		res := ingestRows(t, s, rows)
		stop()
		if len(seen) == 0 {
			t.Fatalf("the filtered measurement's queries were never seen running; tuning %+v", res.Tuning)
		}
		t.Logf("%d cancels sent, the first to: %.100s", len(seen), seen[0])
		if res.Tuning == nil || res.Tuning.Exact() || res.Tuning.FilteredMeasured ||
			!strings.Contains(res.Tuning.FilteredUnmeasured, "the measurement failed") || !strings.Contains(res.Tuning.FilteredUnmeasured, "canceling statement") {
			t.Fatalf("tuning: %+v, want the unfiltered setting measured and filtered searches unmeasured because the measurement failed", res.Tuning)
		}
		if got, ok, err := s.Tuning(ctx); err != nil || !ok || got.Value != res.Tuning.Value || got.FilteredUnmeasured != res.Tuning.FilteredUnmeasured {
			t.Fatalf("recorded tuning: %+v %v %v, want %+v", got, ok, err, *res.Tuning)
		}
	})

	t.Run("tuning_recorded_before_filtered_searches_were_measured", func(t *testing.T) {
		// 20k rows: on fewer PostgreSQL prefers a scan to the graph for
		// a 1% filter.
		rows, queries := split(nearDuplicates(20000, 32, 20, 8), 1000)
		s := ensure(t, pool, vectorstore.Spec{Name: "old_tuning", Dimensions: 32, Index: vectorstore.Index{Type: vectorstore.HNSW}, Features: testFeatures})
		ingestRows(t, s, rows)
		rare := []vectorstore.Filter{filter(t, s, "category = rare")}
		// rewrite records the tuning as edit makes it, and opens the
		// store again, so no cached tuning hides it.
		rewrite := func(edit string) *vectorstore.Store {
			t.Helper()
			if _, err := pool.Exec(ctx, "UPDATE outpost.search_tuning SET tuning = "+edit+" WHERE name = $1", "old_tuning"); err != nil {
				t.Fatal(err)
			}
			s, err := vectorstore.Open(ctx, pool, "old_tuning")
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		// Measured, and no ef_search reached the target: exact, unless
		// the caller sets one.
		s = rewrite(`(tuning - 'filteredValue') || '{"filteredMeasured": true}'`)
		expectPath(t, s, queries[0].Embedding, vectorstore.SearchOptions{Filters: rare}, vectorstore.PathExact, 10)
		expectPath(t, s, queries[0].Embedding, vectorstore.SearchOptions{Filters: rare, EfSearch: 40}, vectorstore.PathHNSWIterative, 10)

		// The JSON an Outpost before this measurement recorded: the
		// filtered fields absent. Filtered searches are as they were:
		// the iterative scan at the size-based ef_search, 120 below
		// 100k rows, so they return what ef_search 120 returns.
		s = rewrite(`tuning - 'filteredMeasured' - 'filteredValue' - 'filteredRecall' - 'filteredUnmeasured'`)
		if got, ok, err := s.Tuning(ctx); err != nil || !ok || got.FilteredMeasured {
			t.Fatalf("old tuning read back: %+v %v %v", got, ok, err)
		}
		for _, q := range queries {
			atDefaults, err := s.Search(ctx, q.Embedding, vectorstore.SearchOptions{Filters: rare})
			if err != nil {
				t.Fatal(err)
			}
			at120, err := s.Search(ctx, q.Embedding, vectorstore.SearchOptions{Filters: rare, EfSearch: 120})
			if err != nil {
				t.Fatal(err)
			}
			if atDefaults.Path != vectorstore.PathHNSWIterative || keysOf(atDefaults) != keysOf(at120) {
				t.Fatalf("filtered search with an old tuning: %s by %s, want %s by %s (ef_search 120)", keysOf(atDefaults), atDefaults.Path, keysOf(at120), vectorstore.PathHNSWIterative)
			}
		}
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

// keysOf is the keys a search returned, in order.
func keysOf(res vectorstore.SearchResult) string {
	keys := make([]string, len(res.Results))
	for i, r := range res.Results {
		keys[i] = r.Key
	}
	return strings.Join(keys, ",")
}
