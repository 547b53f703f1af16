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
		if got.Path != vectorstore.PathHNSW || got.Index != "recall_embedding_idx" {
			t.Errorf("answered by %s (%s), want hnsw (recall_embedding_idx)", got.Path, got.Index)
		}
		gotKeys := map[string]bool{}
		for _, r := range got.Results {
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
	if len(res.Results) != 1 || res.Results[0].Key != "a" || res.Results[0].Features["category"] != "old" || res.Path != vectorstore.PathExact {
		t.Errorf("search as of %s = %+v, want a with category old", then, res)
	}
	latest, err := s.Search(ctx, []float32{1, 0.1, 0}, vectorstore.SearchOptions{K: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(latest.Results) != 1 || latest.Results[0].Key != "b" {
		t.Errorf("latest search = %+v, want b (a moved away)", latest)
	}
	if _, err := s.Search(ctx, []float32{1, 0, 0}, vectorstore.SearchOptions{AsOf: time.Now().Add(-60 * 24 * time.Hour)}); err == nil {
		t.Error("as-of before the retention window: no error")
	}
}
