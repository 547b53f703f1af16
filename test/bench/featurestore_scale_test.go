package bench

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpostdata/outpost/vectorstore"
)

// BenchmarkFeatureStoreSearchAtScale measures search quality and cost at
// Search's defaults on the set: 500k uniformly random 128-dimensional
// vectors (OUTPOST_BENCH_SEARCH_ROWS to change), built once for all its
// sub-benchmarks, with an HNSW index and a category that 1% of the rows
// carry, drawn independently of the vectors. Recall@10 is against the
// exact answer computed in Go; latency is side by side, query by query in
// turn, with exact search (Exact: true) in the same run, and reported as
// ratios:
//
//   - unfiltered: the default path against exact search, and ef_search
//     40 to 400 for the trade-off the defaults pick from;
//   - filtered_1pct: a 1% filter at the defaults measured for filtered
//     searches (the iterative index scan at the ef_search measured, or
//     exact ranking when none reached the target), against the exact
//     filtered search, the unfiltered search, and the iterative scan at
//     pgvector's own ef_search 40;
//   - filtered_1pct_btree: the same filter once the category is Indexed,
//     read through its B-tree.
//
// Each reports the share of queries the expected path answered.
func BenchmarkFeatureStoreSearchAtScale(b *testing.B) {
	pg, pool := vectorDB(b)
	ctx := context.Background()
	// The graph of 500k vectors must fit in maintenance_work_mem while it
	// builds, or pgvector goes on building it on disk, many times slower.
	// Building is not what this measures.
	admin := pg.Connect(b, "postgres")
	if _, err := admin.Exec(ctx, "ALTER SYSTEM SET maintenance_work_mem = '1GB'"); err != nil {
		b.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		b.Fatal(err)
	}
	n := envInt("OUTPOST_BENCH_SEARCH_ROWS", 500000)
	const dims, queries = 128, 50
	rng := rand.New(rand.NewPCG(17, 18))
	randomVec := func() []float32 {
		v := make([]float32, dims)
		for j := range v {
			v[j] = rng.Float32()
		}
		return v
	}
	vecs := make([][]float32, n)
	for i := range vecs {
		vecs[i] = randomVec()
	}
	qs := make([][]float32, queries)
	for i := range qs {
		qs[i] = randomVec()
	}
	spec := vectorstore.Spec{Name: "scale", Dimensions: dims, Features: []vectorstore.Feature{{Name: "category", Type: vectorstore.Text}}}
	s, _, err := vectorstore.Ensure(ctx, pool, spec, vectorstore.EnsureOptions{})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	// sliceReader gives row i category "c" + i%100: "c7" is 1% of the
	// rows, spread over the random vectors.
	ingested, err := s.Ingest(ctx, &sliceReader{vecs: vecs, now: time.Now().Add(-time.Hour)}, vectorstore.IngestOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%d x %d: ingest, HNSW build and calibration in %s", n, dims, time.Since(start).Round(time.Second))
	// The defaults are what Calibrate measured on these rows: an
	// ef_search, or exact ranking when no ef_search reaches the target.
	if ingested.Tuning == nil {
		b.Fatal("the ingest that built the index measured no search defaults")
	}
	tuning := *ingested.Tuning
	filtered := "not measured: " + tuning.FilteredUnmeasured
	if tuning.FilteredMeasured {
		filtered = fmt.Sprintf("%s %d (0: exact), recall@10 on the sample %.3f", tuning.Knob, tuning.FilteredValue, tuning.FilteredRecall)
	}
	b.Logf("search defaults measured in %s: %s %d (0: exact), recall@10 on the sample %.3f; with a 1%% filter: %s",
		tuning.Took.Round(time.Millisecond), tuning.Knob, tuning.Value, tuning.Recall, filtered)
	defaultPath := vectorstore.PathHNSW
	if tuning.Exact() {
		defaultPath = vectorstore.PathExact
	}
	filteredPath := vectorstore.PathHNSWIterative
	if tuning.FilteredMeasured && tuning.FilteredDefault() == 0 {
		filteredPath = vectorstore.PathExact
	}
	all := exactTop10(vecs, qs, func(int) bool { return true })
	rare := exactTop10(vecs, qs, func(i int) bool { return i%100 == 7 })
	filter, err := s.ParseFilter("category = c7")
	if err != nil {
		b.Fatal(err)
	}

	// side runs each search on every query, in turn with the others and
	// rotating which goes first, b.N times, and reports each one's
	// latency, recall against truth, and share of queries answered by
	// want.
	type search struct {
		name  string
		opts  vectorstore.SearchOptions
		truth []map[string]bool
		want  vectorstore.SearchPath
	}
	side := func(b *testing.B, searches ...search) []time.Duration {
		spent := make([]time.Duration, len(searches))
		hits, onPath := make([]int, len(searches)), make([]int, len(searches))
		for range b.N {
			for qi, q := range qs {
				for j := range searches {
					k := (qi + j) % len(searches)
					t0 := time.Now()
					res, err := s.Search(ctx, q, searches[k].opts)
					spent[k] += time.Since(t0)
					if err != nil {
						b.Fatal(err)
					}
					for _, r := range res.Results {
						if searches[k].truth[qi][r.Key] {
							hits[k]++
						}
					}
					if res.Path == searches[k].want {
						onPath[k]++
					}
				}
			}
		}
		for k, sr := range searches {
			b.ReportMetric(float64(spent[k].Microseconds())/float64(b.N*queries), sr.name+"_us/query")
			b.ReportMetric(float64(hits[k])/float64(10*b.N*queries), sr.name+"_recall@10")
			b.ReportMetric(float64(onPath[k])/float64(b.N*queries), sr.name+"_on_"+string(sr.want))
		}
		return spent
	}
	ratio := func(b *testing.B, spent []time.Duration, a, ref int, name string) {
		b.ReportMetric(float64(spent[a])/float64(spent[ref]), name)
	}

	b.Run("unfiltered", func(b *testing.B) {
		spent := side(b,
			search{"default", vectorstore.SearchOptions{K: 10}, all, defaultPath},
			search{"exact", vectorstore.SearchOptions{K: 10, Exact: true}, all, vectorstore.PathExact})
		ratio(b, spent, 0, 1, "default/exact")
		// What the measurement cost, here too since a parent
		// benchmark's log is not printed without -v.
		b.ReportMetric(tuning.Took.Seconds(), "calibration_s")
		b.ReportMetric(float64(tuning.Value), "default_ef_search")
	})
	b.Run("ef_search", func(b *testing.B) {
		var sides []search
		for _, ef := range []int{40, 100, 200, 400, 600, 800, 1000} {
			sides = append(sides, search{"ef" + strconv.Itoa(ef), vectorstore.SearchOptions{K: 10, EfSearch: ef}, all, vectorstore.PathHNSW})
		}
		sides = append(sides, search{"default", vectorstore.SearchOptions{K: 10}, all, defaultPath})
		spent := side(b, sides...)
		ratio(b, spent, len(sides)-1, 0, "default/ef40")
	})
	b.Run("filtered_1pct", func(b *testing.B) {
		spent := side(b,
			search{"filtered", vectorstore.SearchOptions{K: 10, Filters: []vectorstore.Filter{filter}}, rare, filteredPath},
			search{"exact_filtered", vectorstore.SearchOptions{K: 10, Filters: []vectorstore.Filter{filter}, Exact: true}, rare, vectorstore.PathExact},
			search{"unfiltered", vectorstore.SearchOptions{K: 10}, all, defaultPath},
			search{"filtered_ef40", vectorstore.SearchOptions{K: 10, Filters: []vectorstore.Filter{filter}, EfSearch: 40}, rare, vectorstore.PathHNSWIterative})
		ratio(b, spent, 0, 2, "filtered/unfiltered")
		ratio(b, spent, 0, 1, "filtered/exact_filtered")
		// 0: exact ranking.
		b.ReportMetric(float64(tuning.FilteredDefault()), "filtered_default_ef_search")
	})

	spec.Features[0].Indexed = true
	if s, _, err = vectorstore.Ensure(ctx, pool, spec, vectorstore.EnsureOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "ANALYZE "+s.Table()); err != nil {
		b.Fatal(err)
	}
	b.Run("filtered_1pct_btree", func(b *testing.B) {
		spent := side(b,
			search{"btree", vectorstore.SearchOptions{K: 10, Filters: []vectorstore.Filter{filter}}, rare, vectorstore.PathBTree},
			search{"unfiltered", vectorstore.SearchOptions{K: 10}, all, defaultPath})
		ratio(b, spent, 0, 1, "btree/unfiltered")
	})
	// What PostgreSQL itself picks for plain SQL with the 1% filter on the
	// indexed category at this size: 1 if it walks the vector index.
	b.Run("plain_sql_plan", func(b *testing.B) {
		var plan []byte
		for range b.N {
			if err := pool.QueryRow(ctx, "EXPLAIN (FORMAT JSON) SELECT key FROM scale WHERE category = 'c7' ORDER BY embedding <=> $1 LIMIT 10", vecText(qs[0])).Scan(&plan); err != nil {
				b.Fatal(err)
			}
		}
		onVector := 0.0
		if strings.Contains(string(plan), "scale_embedding_idx") {
			onVector = 1
		}
		b.ReportMetric(onVector, "plain_sql_1pct_on_vector_index")
	})
}

// exactTop10 returns, for each query, the keys of the 10 vectors nearest
// by cosine distance among those keep accepts.
func exactTop10(vecs, qs [][]float32, keep func(int) bool) []map[string]bool {
	norms := make([]float64, len(vecs))
	for i, v := range vecs {
		norms[i] = norm(v)
	}
	out := make([]map[string]bool, len(qs))
	type kd struct {
		i int
		d float64
	}
	for qi, q := range qs {
		qn := norm(q)
		var best []kd
		for i, v := range vecs {
			if !keep(i) {
				continue
			}
			var dot float64
			for j := range v {
				dot += float64(v[j]) * float64(q[j])
			}
			d := 1 - dot/(norms[i]*qn)
			if len(best) < 10 || d < best[9].d {
				best = append(best, kd{i, d})
				sort.Slice(best, func(a, b int) bool { return best[a].d < best[b].d })
				best = best[:min(len(best), 10)]
			}
		}
		out[qi] = map[string]bool{}
		for _, x := range best {
			out[qi]["k"+strconv.Itoa(x.i)] = true
		}
	}
	return out
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

func vecText(v []float32) string {
	parts := make([]string, len(v))
	for i, f := range v {
		parts[i] = strconv.FormatFloat(float64(f), 'g', -1, 32)
	}
	return "[" + strings.Join(parts, ",") + "]"
}
