package vectorstore_test

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/outpostdata/outpost/vectorstore"
)

// exactNeighbours computes the true k nearest keys in Go, independently of
// the database.
func exactNeighbours(rows []row, q []float32, k int, keep func(row) bool) []string {
	type kd struct {
		key string
		d   float64
	}
	var all []kd
	for _, r := range rows {
		if keep == nil || keep(r) {
			all = append(all, kd{r.Key, cosineDistance(r.Embedding, q)})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].d < all[j].d })
	out := make([]string, 0, k)
	for _, x := range all[:min(k, len(all))] {
		out = append(out, x.key)
	}
	return out
}

func TestHNSWRecallAtTenOnClusteredData(t *testing.T) {
	_, pool := newDB(t)
	ctx := context.Background()
	// The queries are points of the same clusters that are not stored.
	all := clustered(10100, 64, 50, 7)
	rows, queries := all[:10000], all[10000:]
	s := ensure(t, pool, vectorstore.Spec{Name: "recall", Dimensions: 64, Features: testFeatures})
	ingestRows(t, s, rows)
	var hits, total int
	for _, q := range queries {
		want := exactNeighbours(rows, q.Embedding, 10, nil)
		got, err := s.Search(ctx, q.Embedding, vectorstore.SearchOptions{K: 10})
		if err != nil {
			t.Fatal(err)
		}
		gotKeys := map[string]bool{}
		for _, r := range got {
			gotKeys[r.Key] = true
		}
		for _, k := range want {
			if gotKeys[k] {
				hits++
			}
		}
		total += len(want)
	}
	recall := float64(hits) / float64(total)
	t.Logf("recall@10 = %.3f over %d queries", recall, len(queries))
	if recall < 0.95 {
		t.Errorf("recall@10 = %.3f, want at least 0.95", recall)
	}
	// The planner must actually use the index for the plain SQL users run.
	rowsPlan, err := pool.Query(ctx, "EXPLAIN SELECT key FROM recall ORDER BY embedding <=> '"+vecText(queries[0].Embedding)+"' LIMIT 10")
	if err != nil {
		t.Fatal(err)
	}
	var full string
	for rowsPlan.Next() {
		var l string
		rowsPlan.Scan(&l)
		full += l + "\n"
	}
	if !strings.Contains(full, "recall_embedding_idx") {
		t.Errorf("plain SQL does not use the HNSW index:\n%s", full)
	}
}

func TestFilteredSearchAtOnePercentReturnsExactlyK(t *testing.T) {
	_, pool := newDB(t)
	// 200 rows are "rare": 1%. The queries are points of the same clusters
	// that are not stored.
	all := clustered(20020, 32, 20, 3)
	rows, queries := all[:20000], all[20000:]
	for _, index := range []vectorstore.Index{{Type: vectorstore.HNSW}, {Type: vectorstore.IVFFlat, Lists: 100}} {
		t.Run(string(index.Type), func(t *testing.T) {
			s := ensure(t, pool, vectorstore.Spec{Name: "filtered_" + string(index.Type), Dimensions: 32, Index: index, Features: testFeatures})
			ingestRows(t, s, rows)
			checkFilteredSearch(t, s, rows, queries)
		})
	}
}

func checkFilteredSearch(t *testing.T, s *vectorstore.Store, rows, queries []row) {
	ctx := context.Background()
	f, err := s.ParseFilter("category = rare")
	if err != nil {
		t.Fatal(err)
	}
	rare := func(r row) bool { return r.Category == "rare" }
	totalHits := 0
	for i, q := range queries {
		got, err := s.Search(ctx, q.Embedding, vectorstore.SearchOptions{K: 10, Filters: []vectorstore.Filter{f}})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 10 {
			t.Fatalf("query %d: %d rows, want exactly 10", i, len(got))
		}
		want := map[string]bool{}
		for _, k := range exactNeighbours(rows, q.Embedding, 10, rare) {
			want[k] = true
		}
		hits := 0
		for _, r := range got {
			if r.Features["category"] != "rare" {
				t.Errorf("query %d: %s has category %v, want rare", i, r.Key, r.Features["category"])
			}
			if want[r.Key] {
				hits++
			}
		}
		totalHits += hits
		for j := 1; j < len(got); j++ {
			if got[j].Distance < got[j-1].Distance {
				t.Errorf("query %d: results not ordered by distance", i)
			}
		}
	}
	// Exactly k rows is the promise; they should also be mostly the right
	// ones.
	recall := float64(totalHits) / float64(10*len(queries))
	t.Logf("filtered recall@10 = %.3f", recall)
	if recall < 0.9 {
		t.Errorf("filtered recall@10 = %.3f, want at least 0.9", recall)
	}
	// With a tiny scan budget the iterative scan stops early; search then
	// answers exactly, still with k rows.
	got, err := s.Search(ctx, rows[5].Embedding, vectorstore.SearchOptions{K: 10, Filters: []vectorstore.Filter{f}, MaxScanTuples: 50, EfSearch: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 10 {
		t.Errorf("with max_scan_tuples 50: %d rows, want 10", len(got))
	}
}

func TestAsOfReturnsTheValuesAsTheyWereThen(t *testing.T) {
	_, pool := newDB(t)
	ctx := context.Background()
	s := ensure(t, pool, vectorstore.Spec{Name: "asof", Dimensions: 3, Features: testFeatures})
	t0 := time.Now().Add(-10 * time.Hour).Truncate(time.Second)
	ingestRows(t, s, []row{
		{Key: "a", Embedding: []float32{1, 0, 0}, EventTime: t0, Category: "old", Views: 1},
		{Key: "b", Embedding: []float32{0, 1, 0}, EventTime: t0, Category: "old", Views: 1},
	})
	ingestRows(t, s, []row{{Key: "a", Embedding: []float32{0, 0, 1}, EventTime: t0.Add(5 * time.Hour), Category: "new", Views: 2}})

	then := t0.Add(time.Hour)
	got, err := s.Lookup(ctx, []string{"a", "b"}, then)
	if err != nil {
		t.Fatal(err)
	}
	if got["a"].Features["category"] != "old" || got["a"].Features["views"] != int64(1) {
		t.Errorf("lookup a as of %s = %+v, want category old, views 1", then, got["a"].Features)
	}
	now, err := s.Lookup(ctx, []string{"a"}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if now["a"].Features["category"] != "new" {
		t.Errorf("latest a = %+v, want category new", now["a"].Features)
	}
	// Search as of then sees a's old embedding [1,0,0] as nearest.
	res, err := s.Search(ctx, []float32{1, 0.1, 0}, vectorstore.SearchOptions{K: 1, AsOf: then})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Key != "a" || res[0].Features["category"] != "old" {
		t.Errorf("search as of %s = %+v, want a with category old", then, res)
	}
	latest, err := s.Search(ctx, []float32{1, 0.1, 0}, vectorstore.SearchOptions{K: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(latest) != 1 || latest[0].Key != "b" {
		t.Errorf("latest search = %+v, want b (a moved away)", latest)
	}
	if _, err := s.Search(ctx, []float32{1, 0, 0}, vectorstore.SearchOptions{AsOf: time.Now().Add(-60 * 24 * time.Hour)}); err == nil {
		t.Error("as-of before the retention window: no error")
	}
}
