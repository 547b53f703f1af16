package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/parquet-go/parquet-go"
	"github.com/pgvector/pgvector-go"

	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/vectorstore"
)

// ingestSizes are the 200k×128 and 20k×1536, scaled by
// OUTPOST_BENCH_FS_PERCENT (default 25, which keeps `make bench` within a
// few minutes; 100 is the sizes). Rates are per row, so the ratios
// compare the same work.
func ingestSizes() []struct{ rows, dims int } {
	pct := max(envInt("OUTPOST_BENCH_FS_PERCENT", 25), 1)
	return []struct{ rows, dims int }{{200000 * pct / 100, 128}, {20000 * pct / 100, 1536}}
}

func vectorDB(b *testing.B) (*harness.Postgres, *pgxpool.Pool) {
	pg := harness.StartPostgres(b)
	ctx := context.Background()
	if _, err := pg.Connect(b, "postgres").Exec(ctx, "CREATE DATABASE features"); err != nil {
		b.Fatal(err)
	}
	if _, err := pg.Connect(b, "features").Exec(ctx, "CREATE EXTENSION vector"); err != nil {
		b.Fatal(err)
	}
	pool, err := vectorstore.Connect(ctx, pg.URL("features"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	return pg, pool
}

func clusteredVectors(n, dims, clusters int, seed uint64) [][]float32 {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e37))
	centres := make([][]float32, clusters)
	for i := range centres {
		centres[i] = make([]float32, dims)
		for j := range centres[i] {
			centres[i][j] = float32(rng.NormFloat64())
		}
	}
	out := make([][]float32, n)
	for i := range out {
		c := centres[rng.IntN(clusters)]
		out[i] = make([]float32, dims)
		for j := range out[i] {
			out[i][j] = c[j] + float32(rng.NormFloat64()*0.3)
		}
	}
	return out
}

type benchRow struct {
	Key       string    `parquet:"key"`
	Embedding []float32 `parquet:"embedding,list"`
	EventTime time.Time `parquet:"event_time,timestamp(microsecond)"`
	Category  string    `parquet:"category"`
}

// sliceReader feeds Ingest from memory, so the store's own cost can be
// told apart from decoding a file.
type sliceReader struct {
	vecs [][]float32
	now  time.Time
	i    int
}

func (r *sliceReader) Name() string { return "memory" }

func (r *sliceReader) Next(columns []string, values []any) (int, error) {
	if r.i == len(r.vecs) {
		return 0, io.EOF
	}
	// columns are key, embedding, event_time, category.
	values[0], values[1], values[2], values[3] = "k"+strconv.Itoa(r.i), r.vecs[r.i], r.now, "c"+strconv.Itoa(r.i%100)
	r.i++
	return 0, nil
}

// BenchmarkFeatureStoreIngest loads the same rows into empty tables in
// several ways, interleaved (the order rotates every iteration, so none
// always runs first or last) on one pool with the same settings:
//
//   - store: vectorstore's ingest of a Parquet file, what `outpost
//     featurestore ingest` runs, decoding included;
//   - store_mem: the same ingest fed from memory, without the file;
//   - raw_binary: pgx binary CopyFrom into one bare table with a primary
//     key, the reference;
//   - raw_latest_history: a latest table beside a history table of every
//     version, written by hand: binary CopyFrom into the history table,
//     then INSERT ... SELECT into the latest table, in one transaction.
//     The store keeps the current version in its latest table only (its
//     history is a view over that and the past table), so a bulk load
//     writes each row once; this shows what a second copy would cost;
//   - text_copy: text-format COPY into a bare table.
//
// The store has no vector index here, so every way does the same load.
func BenchmarkFeatureStoreIngest(b *testing.B) {
	for _, size := range ingestSizes() {
		b.Run(fmt.Sprintf("%dx%d", size.rows, size.dims), func(b *testing.B) {
			_, pool := vectorDB(b)
			ctx := context.Background()
			vecs := clusteredVectors(size.rows, size.dims, 20, 1)
			now := time.Now().Add(-time.Hour).Truncate(time.Second)
			path := filepath.Join(harness.TempDir(b), "rows.parquet")
			f, _ := os.Create(path)
			w := parquet.NewGenericWriter[benchRow](f)
			for i, v := range vecs {
				w.Write([]benchRow{{Key: "k" + strconv.Itoa(i), Embedding: v, EventTime: now, Category: "c" + strconv.Itoa(i%100)}})
			}
			w.Close()
			f.Close()
			var textBuf bytes.Buffer
			for i, v := range vecs {
				fmt.Fprintf(&textBuf, "k%d\t%s\t%s\tc%d\n", i, pgvector.NewVector(v).String(), now.Format(time.RFC3339), i%100)
			}
			rawRows := func(j int) ([]any, error) {
				return []any{"k" + strconv.Itoa(j), pgvector.NewVector(vecs[j]), now, "c" + strconv.Itoa(j%100)}, nil
			}
			cols := []string{"key", "embedding", "event_time", "category"}
			newStore := func(name string) *vectorstore.Store {
				s, _, err := vectorstore.Ensure(ctx, pool, vectorstore.Spec{Name: name, Dimensions: size.dims,
					Index: vectorstore.Index{Type: vectorstore.NoIndex}, Features: []vectorstore.Feature{{Name: "category", Type: vectorstore.Text}}}, vectorstore.EnsureOptions{})
				if err != nil {
					b.Fatal(err)
				}
				return s
			}
			bare := func(name, pk string) {
				if _, err := pool.Exec(ctx, fmt.Sprintf("CREATE TABLE %s (key text NOT NULL, embedding vector(%d) NOT NULL, event_time timestamptz NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), category text, PRIMARY KEY (%s))", name, size.dims, pk)); err != nil {
					b.Fatal(err)
				}
			}
			ways := []struct {
				name string
				prep func(i int) func() error
			}{
				{"store", func(i int) func() error {
					s := newStore(fmt.Sprintf("ingest_%d", i))
					return func() error {
						_, err := s.IngestFile(ctx, path, vectorstore.IngestOptions{})
						return err
					}
				}},
				{"store_mem", func(i int) func() error {
					s := newStore(fmt.Sprintf("ingest_mem_%d", i))
					return func() error {
						_, err := s.Ingest(ctx, &sliceReader{vecs: vecs, now: now}, vectorstore.IngestOptions{})
						return err
					}
				}},
				{"raw_binary", func(i int) func() error {
					t := fmt.Sprintf("raw_%d", i)
					bare(t, "key")
					return func() error {
						_, err := pool.CopyFrom(ctx, pgx.Identifier{t}, cols, pgx.CopyFromSlice(len(vecs), rawRows))
						return err
					}
				}},
				{"raw_latest_history", func(i int) func() error {
					latest, history := fmt.Sprintf("rawl_%d", i), fmt.Sprintf("rawl_%d_history", i)
					bare(latest, "key")
					bare(history, "key, event_time")
					return func() error {
						tx, err := pool.Begin(ctx)
						if err != nil {
							return err
						}
						defer tx.Rollback(ctx)
						if _, err := tx.CopyFrom(ctx, pgx.Identifier{history}, cols, pgx.CopyFromSlice(len(vecs), rawRows)); err != nil {
							return err
						}
						if _, err := tx.Exec(ctx, "INSERT INTO "+latest+" SELECT * FROM "+history); err != nil {
							return err
						}
						return tx.Commit(ctx)
					}
				}},
				{"text_copy", func(i int) func() error {
					t := fmt.Sprintf("text_%d", i)
					bare(t, "key")
					return func() error {
						conn, err := pool.Acquire(ctx)
						if err != nil {
							return err
						}
						defer conn.Release()
						_, err = conn.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(textBuf.Bytes()), "COPY "+t+" (key, embedding, event_time, category) FROM STDIN")
						return err
					}
				}},
			}
			spent := make([]time.Duration, len(ways))
			run := func(i int, record bool) {
				for j := range ways {
					w := (i + j) % len(ways)
					load := ways[w].prep(i)
					start := time.Now()
					if err := load(); err != nil {
						b.Fatalf("%s: %v", ways[w].name, err)
					}
					if record {
						spent[w] += time.Since(start)
					}
				}
			}
			// One untimed round warms the server, the pool's connections
			// and pgx's statement caches for every way alike.
			run(1<<20, false)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				run(i, true)
			}
			b.StopTimer()
			rows := float64(size.rows * b.N)
			rate := map[string]float64{}
			for w, way := range ways {
				rate[way.name] = rows / spent[w].Seconds()
				b.ReportMetric(rate[way.name], way.name+"_rows/s")
			}
			b.ReportMetric(rate["store"]/rate["raw_binary"], "store/raw_binary")
			b.ReportMetric(rate["store_mem"]/rate["raw_binary"], "store_mem/raw_binary")
			b.ReportMetric(rate["store"]/rate["raw_latest_history"], "store/raw_latest_history")
			b.ReportMetric(rate["store_mem"]/rate["raw_latest_history"], "store_mem/raw_latest_history")
			b.ReportMetric(rate["store"]/rate["text_copy"], "store/text_copy")
			b.ReportMetric(rate["raw_binary"]/rate["text_copy"], "raw_binary/text_copy")
		})
	}
}

// BenchmarkFeatureStoreSearch measures, on 20k×128 clustered vectors with
// HNSW: kNN latency through the Go API against the same plain SQL through
// pgx; recall@10 against QPS at ef_search 40, 100 and 200; and a 1%
// filtered search against an unfiltered one. The filtered feature is
// Indexed (a B-tree), as a store filtered on it should be. Every side is
// warmed first, and the sides compared alternate query by query, on the
// same pool and connection settings, so drift in the machine's load falls
// on both alike.
func BenchmarkFeatureStoreSearch(b *testing.B) {
	_, pool := vectorDB(b)
	ctx := context.Background()
	const n, dims, queries = 20000, 128, 100
	vecs := clusteredVectors(n, dims, 50, 2)
	qs := clusteredVectors(queries, dims, 50, 2)
	now := time.Now().Add(-time.Hour).Truncate(time.Second)
	s, _, err := vectorstore.Ensure(ctx, pool, vectorstore.Spec{Name: "search", Dimensions: dims,
		Features: []vectorstore.Feature{{Name: "category", Type: vectorstore.Text, Indexed: true}}}, vectorstore.EnsureOptions{})
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(harness.TempDir(b), "rows.parquet")
	f, _ := os.Create(path)
	w := parquet.NewGenericWriter[benchRow](f)
	for i, v := range vecs {
		cat := "common"
		if i%100 == 0 {
			cat = "rare"
		}
		w.Write([]benchRow{{Key: strconv.Itoa(i), Embedding: v, EventTime: now, Category: cat}})
	}
	w.Close()
	f.Close()
	if _, err := s.IngestFile(ctx, path, vectorstore.IngestOptions{}); err != nil {
		b.Fatal(err)
	}
	truth := make([]map[string]bool, queries)
	for qi, q := range qs {
		type kd struct {
			k int
			d float64
		}
		all := make([]kd, n)
		for i, v := range vecs {
			all[i] = kd{i, cosine(q, v)}
		}
		sort.Slice(all, func(i, j int) bool { return all[i].d < all[j].d })
		truth[qi] = map[string]bool{}
		for _, x := range all[:10] {
			truth[qi][strconv.Itoa(x.k)] = true
		}
	}
	rare, err := s.ParseFilter("category = rare")
	if err != nil {
		b.Fatal(err)
	}
	apiSearch := func(q []float32) error {
		_, err := s.Search(ctx, q, vectorstore.SearchOptions{K: 10})
		return err
	}
	// The same SQL the API sends, with the same query parameter, read as
	// fully: what a careful engineer would write by hand.
	rawSearch := func(q []float32) error {
		rows, err := pool.Query(ctx, "SELECT key, (embedding <=> $1)::float8, event_time, updated_at, category FROM search ORDER BY embedding <=> $1 LIMIT $2", pgvector.NewVector(q), 10)
		if err != nil {
			return err
		}
		for rows.Next() {
			if _, err := rows.Values(); err != nil {
				return err
			}
		}
		return rows.Err()
	}
	filteredSearch := func(q []float32) error {
		res, err := s.Search(ctx, q, vectorstore.SearchOptions{K: 10, Filters: []vectorstore.Filter{rare}})
		if err == nil && len(res.Results) != 10 {
			err = fmt.Errorf("filtered search returned %d rows", len(res.Results))
		}
		return err
	}
	// ab runs fns in turn on every query, rotating which goes first, and
	// adds each one's time to spent.
	ab := func(spent []time.Duration, fns ...func(q []float32) error) {
		for qi, q := range qs {
			for j := range fns {
				k := (qi + j) % len(fns)
				start := time.Now()
				if err := fns[k](q); err != nil {
					b.Fatal(err)
				}
				spent[k] += time.Since(start)
			}
		}
	}
	// Warm every path: the index and heap pages, the pool's connections,
	// pgx's prepared statements.
	for range 2 {
		ab(make([]time.Duration, 3), apiSearch, rawSearch, filteredSearch)
	}
	var apiRaw, filt [2]time.Duration
	efLatency := map[int]time.Duration{}
	efRecall := map[int]float64{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ab(apiRaw[:], apiSearch, rawSearch)
		ab(filt[:], filteredSearch, apiSearch)
		for _, ef := range []int{40, 100, 200} {
			hits := 0
			start := time.Now()
			for qi, q := range qs {
				res, err := s.Search(ctx, q, vectorstore.SearchOptions{K: 10, EfSearch: ef})
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range res.Results {
					if truth[qi][r.Key] {
						hits++
					}
				}
			}
			efLatency[ef] += time.Since(start) / queries
			efRecall[ef] = float64(hits) / float64(10*queries)
		}
	}
	b.StopTimer()
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N*queries) }
	b.ReportMetric(per(apiRaw[0]), "api_us/query")
	b.ReportMetric(per(apiRaw[1]), "raw_sql_us/query")
	b.ReportMetric(float64(apiRaw[0])/float64(apiRaw[1]), "api/raw")
	b.ReportMetric(per(filt[0]), "filtered1pct_us/query")
	b.ReportMetric(per(filt[1]), "unfiltered_us/query")
	b.ReportMetric(float64(filt[0])/float64(filt[1]), "filtered/unfiltered")
	for _, ef := range []int{40, 100, 200} {
		b.ReportMetric(efRecall[ef], fmt.Sprintf("recall@10_ef%d", ef))
		b.ReportMetric(1e6/(float64(efLatency[ef].Microseconds())/float64(b.N)), fmt.Sprintf("qps_ef%d", ef))
	}
}

func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return 1 - dot/(math.Sqrt(na)*math.Sqrt(nb))
}
