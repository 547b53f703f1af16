package vectorstore_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/parquet-go/parquet-go"

	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/vectorstore"
)

// newDB starts PostgreSQL with pgvector created in database "features" and
// returns a pool on it.
func newDB(t *testing.T) (*harness.Postgres, *pgxpool.Pool) {
	t.Helper()
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	admin := pg.Connect(t, "postgres")
	if _, err := admin.Exec(ctx, "CREATE DATABASE features"); err != nil {
		t.Fatal(err)
	}
	conn := pg.Connect(t, "features")
	if _, err := conn.Exec(ctx, "CREATE EXTENSION vector"); err != nil {
		t.Fatal(err)
	}
	pool, err := vectorstore.Connect(ctx, pg.URL("features"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pg, pool
}

func ensure(t *testing.T, pool *pgxpool.Pool, spec vectorstore.Spec) *vectorstore.Store {
	t.Helper()
	s, _, err := vectorstore.Ensure(context.Background(), pool, spec, vectorstore.EnsureOptions{})
	if err != nil {
		t.Fatalf("ensure %s: %v", spec.Name, err)
	}
	return s
}

// row is one input row in the tests' own terms.
type row struct {
	Key       string
	Embedding []float32
	EventTime time.Time
	Category  string
	Score     float64
	Views     int64
	Active    bool
}

var testFeatures = []vectorstore.Feature{
	{Name: "category", Type: vectorstore.Text},
	{Name: "score", Type: vectorstore.Double},
	{Name: "views", Type: vectorstore.BigInt},
	{Name: "active", Type: vectorstore.Boolean},
}

func vecText(v []float32) string {
	parts := make([]string, len(v))
	for i, f := range v {
		parts[i] = strconv.FormatFloat(float64(f), 'g', -1, 32)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func writeCSV(t *testing.T, path string, rows []row) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := csv.NewWriter(f)
	w.Write([]string{"key", "embedding", "event_time", "category", "score", "views", "active"})
	for _, r := range rows {
		w.Write([]string{r.Key, vecText(r.Embedding), r.EventTime.Format(time.RFC3339Nano), r.Category,
			strconv.FormatFloat(r.Score, 'g', -1, 64), strconv.FormatInt(r.Views, 10), strconv.FormatBool(r.Active)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		t.Fatal(err)
	}
}

func writeJSONL(t *testing.T, path string, rows []row) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	for _, r := range rows {
		enc.Encode(map[string]any{"key": r.Key, "embedding": r.Embedding, "event_time": r.EventTime.Format(time.RFC3339Nano),
			"category": r.Category, "score": r.Score, "views": r.Views, "active": r.Active})
	}
}

type parquetRow struct {
	Key       string    `parquet:"key"`
	Embedding []float32 `parquet:"embedding,list"`
	EventTime time.Time `parquet:"event_time,timestamp(microsecond)"`
	Category  string    `parquet:"category"`
	Score     float64   `parquet:"score"`
	Views     int64     `parquet:"views"`
	Active    bool      `parquet:"active"`
}

func writeParquet(t *testing.T, path string, rows []row) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := parquet.NewGenericWriter[parquetRow](f)
	out := make([]parquetRow, len(rows))
	for i, r := range rows {
		out[i] = parquetRow{r.Key, r.Embedding, r.EventTime, r.Category, r.Score, r.Views, r.Active}
	}
	if _, err := w.Write(out); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// clustered makes n rows around `clusters` random centres, the shape real
// embeddings have, with a category that 1 row in `every` carries as "rare".
func clustered(n, dims, clusters int, seed uint64) []row {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	centres := make([][]float32, clusters)
	for i := range centres {
		centres[i] = make([]float32, dims)
		for j := range centres[i] {
			centres[i][j] = float32(rng.NormFloat64())
		}
	}
	base := time.Now().Add(-48 * time.Hour).Truncate(time.Second).UTC()
	rows := make([]row, n)
	for i := range rows {
		c := centres[rng.IntN(clusters)]
		v := make([]float32, dims)
		for j := range v {
			v[j] = c[j] + float32(rng.NormFloat64()*0.3)
		}
		cat := "common"
		if i%100 == 0 {
			cat = "rare"
		}
		rows[i] = row{Key: fmt.Sprintf("e%06d", i), Embedding: v, EventTime: base.Add(time.Duration(i) * time.Second),
			Category: cat, Score: float64(i) / 10, Views: int64(i), Active: i%2 == 0}
	}
	return rows
}

func cosineDistance(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return 1 - dot/(math.Sqrt(na)*math.Sqrt(nb))
}

func ingestRows(t *testing.T, s *vectorstore.Store, rows []row) vectorstore.IngestResult {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rows.parquet")
	writeParquet(t, path, rows)
	res, err := s.IngestFile(context.Background(), path, vectorstore.IngestOptions{})
	if err != nil {
		t.Fatalf("ingest: %v", err)
	}
	return res
}
