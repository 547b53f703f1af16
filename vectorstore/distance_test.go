package vectorstore_test

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"

	"github.com/outpostdata/outpost/vectorstore"
)

func l2Distance(a, b []float32) float64 {
	var sum float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		sum += d * d
	}
	return math.Sqrt(sum)
}

// negativeInnerProduct is what pgvector's <#> gives.
func negativeInnerProduct(a, b []float32) float64 {
	var dot float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
	}
	return -dot
}

// Every distance, on both vector types and both index types, ranks as an
// exact computation in Go does: the index search finds at least 95% of the
// exact top 10, the exact search (no index) is the exact top 10 for
// vector, and the distances reported are the true ones (to half precision
// for halfvec).
func TestEveryDistanceOnEveryVectorTypeAndIndex(t *testing.T) {
	_, pool := newDB(t)
	ctx := context.Background()
	all := clustered(3030, 32, 20, 11)
	rows, queries := all[:3000], all[3000:]
	distances := map[vectorstore.Distance]func(a, b []float32) float64{
		vectorstore.Cosine: cosineDistance, vectorstore.L2: l2Distance, vectorstore.InnerProduct: negativeInnerProduct,
	}
	for _, vt := range []vectorstore.VectorType{vectorstore.Vector, vectorstore.HalfVec} {
		for _, dist := range []vectorstore.Distance{vectorstore.Cosine, vectorstore.L2, vectorstore.InnerProduct} {
			for _, index := range []vectorstore.Index{{Type: vectorstore.HNSW}, {Type: vectorstore.IVFFlat, Lists: 20}} {
				name := fmt.Sprintf("%s_%s_%s", vt, dist, index.Type)
				t.Run(name, func(t *testing.T) {
					s := ensure(t, pool, vectorstore.Spec{Name: name, Dimensions: 32, VectorType: vt, Distance: dist, Index: index, Features: testFeatures})
					res := ingestRows(t, s, rows)
					if res.Inserted != 3000 || !res.IndexBuiltAfterLoad {
						t.Fatalf("ingest: %+v", res)
					}
					fn := distances[dist]
					// A halfvec keeps about 3 significant digits.
					tolerance := 1e-4
					if vt == vectorstore.HalfVec {
						tolerance = 2e-2
					}
					var hits, total int
					for qi, q := range queries {
						type kd struct {
							key string
							d   float64
						}
						want := make([]kd, len(rows))
						for i, r := range rows {
							want[i] = kd{r.Key, fn(q.Embedding, r.Embedding)}
						}
						sort.Slice(want, func(i, j int) bool { return want[i].d < want[j].d })
						exactRes, err := s.Search(ctx, q.Embedding, vectorstore.SearchOptions{K: 10, Exact: true})
						if err != nil {
							t.Fatal(err)
						}
						// At ef_search 40 PostgreSQL still prefers the
						// index on 3,000 rows (at the default, which
						// grows the index's cost, it ranks them by a scan).
						approxRes, err := s.Search(ctx, q.Embedding, vectorstore.SearchOptions{K: 10, Probes: 5, EfSearch: 40})
						if err != nil {
							t.Fatal(err)
						}
						if exactRes.Path != vectorstore.PathExact || !strings.HasPrefix(string(approxRes.Path), string(index.Type)) {
							t.Fatalf("query %d: paths %s and %s, want exact and the %s index", qi, exactRes.Path, approxRes.Path, index.Type)
						}
						exact, approx := exactRes.Results, approxRes.Results
						if len(exact) != 10 || len(approx) != 10 {
							t.Fatalf("query %d: %d exact and %d indexed results, want 10 each", qi, len(exact), len(approx))
						}
						inExact := map[string]bool{}
						for i, r := range exact {
							inExact[r.Key] = true
							if vt == vectorstore.Vector && r.Key != want[i].key {
								t.Errorf("query %d: exact result %d is %s, want %s", qi, i, r.Key, want[i].key)
							}
							if d := math.Abs(r.Distance - fn(q.Embedding, byKey(rows, r.Key))); d > tolerance*math.Max(1, math.Abs(r.Distance)) {
								t.Errorf("query %d: %s at distance %g, computed %g", qi, r.Key, r.Distance, fn(q.Embedding, byKey(rows, r.Key)))
							}
						}
						for _, r := range approx {
							if inExact[r.Key] {
								hits++
							}
						}
						total += 10
					}
					if recall := float64(hits) / float64(total); recall < 0.95 {
						t.Errorf("recall@10 against exact search = %.3f, want at least 0.95", recall)
					}
				})
			}
		}
	}
}

func byKey(rows []row, key string) []float32 {
	for _, r := range rows {
		if r.Key == key {
			return r.Embedding
		}
	}
	return nil
}
