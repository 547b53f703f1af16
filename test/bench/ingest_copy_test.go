package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/outpostdata/outpost/postgres"
	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/vectorstore"
)

// ingestFiles are the same rows as a Parquet file, what `outpost
// featurestore ingest` reads, and as a PostgreSQL binary COPY file, the
// fastest thing a user could load them with (psql's \copy ... WITH (FORMAT
// binary)): uniformly random vectors, a key, an event time and a category.
type ingestFiles struct{ parquet, copy string }

func writeIngestFiles(b *testing.B, dir string, rows, dims int, eventTime time.Time, seed uint64) ingestFiles {
	b.Helper()
	files := ingestFiles{filepath.Join(dir, fmt.Sprintf("rows_%d.parquet", seed)), filepath.Join(dir, fmt.Sprintf("rows_%d.copy", seed))}
	pf, err := os.Create(files.parquet)
	if err != nil {
		b.Fatal(err)
	}
	cf, err := os.Create(files.copy)
	if err != nil {
		b.Fatal(err)
	}
	pw := parquet.NewGenericWriter[benchRow](pf)
	cw := bufio.NewWriterSize(cf, 1<<20)
	// Binary COPY: signature, flags, header extension length; per row the
	// field count and each field's length and bytes; -1 at the end.
	cw.WriteString("PGCOPY\n\377\r\n\000")
	cw.Write(make([]byte, 8))
	micros := eventTime.Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).Microseconds()
	field := func(p []byte) {
		cw.Write(binary.BigEndian.AppendUint32(nil, uint32(len(p))))
		cw.Write(p)
	}
	rng := rand.New(rand.NewPCG(seed, seed+7))
	vec := make([]float32, dims)
	batch := make([]benchRow, 0, 1000)
	buf := make([]byte, 4+4*dims)
	for i := range rows {
		for j := range vec {
			vec[j] = rng.Float32()*2 - 1
		}
		key, cat := "k"+strconv.Itoa(i), "c"+strconv.Itoa(i%100)
		batch = append(batch, benchRow{Key: key, Embedding: slices.Clone(vec), EventTime: eventTime, Category: cat})
		if len(batch) == cap(batch) || i == rows-1 {
			if _, err := pw.Write(batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
		cw.Write([]byte{0, 4})
		field([]byte(key))
		binary.BigEndian.PutUint16(buf[0:], uint16(dims))
		binary.BigEndian.PutUint16(buf[2:], 0)
		for j, f := range vec {
			binary.BigEndian.PutUint32(buf[4+4*j:], math.Float32bits(f))
		}
		field(buf)
		field(binary.BigEndian.AppendUint64(nil, uint64(micros)))
		field([]byte(cat))
	}
	cw.Write([]byte{0xff, 0xff})
	if err := pw.Close(); err != nil {
		b.Fatal(err)
	}
	if err := cw.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := errors.Join(pf.Close(), cf.Close()); err != nil {
		b.Fatal(err)
	}
	return files
}

// psql runs a psql script against the database, as a user at a terminal
// would, and fails the benchmark with its output if it fails.
func psql(b *testing.B, url, script string) {
	b.Helper()
	bin, err := postgres.BinDir(postgres.DefaultMajorVersion)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("psql: %v\n%s\nscript:\n%s", err, out, script)
	}
}

// abRounds runs each side once per round, alternating which goes first,
// and returns each side's times.
func abRounds(b *testing.B, rounds int, sides ...func(round int)) [][]time.Duration {
	spent := make([][]time.Duration, len(sides))
	for r := range rounds {
		for j := range sides {
			k := (r + j) % len(sides)
			start := time.Now()
			sides[k](r)
			spent[k] = append(spent[k], time.Since(start))
		}
	}
	return spent
}

func medianOf(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// rawTableSQL makes a table like a store's latest table, without Outpost.
func rawTableSQL(name string, dims int) string {
	return fmt.Sprintf("CREATE TABLE %s (key text PRIMARY KEY, embedding vector(%d) NOT NULL, event_time timestamptz NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), category text);\n", name, dims)
}

// BenchmarkIngestVsBinaryCopy measures what issue 17 measured: Parquet
// ingest through the store (IngestFile, what `outpost featurestore ingest`
// runs) against psql's binary \copy of the same rows into an equivalent
// table, at 500k x 128 and 50k x 1536 (OUTPOST_BENCH_INGEST_PERCENT scales
// both), in rounds that alternate which goes first (A B, B A, A B), and
// reports the medians and their ratio (above 1 means the store is faster):
//
//   - empty: into an empty store, against \copy into an empty table with a
//     primary key;
//   - upsert: every key again with a newer event time and new vectors,
//     into the loaded store (which keeps the replaced versions as
//     history), against \copy into a temporary table and INSERT ... ON
//     CONFLICT DO UPDATE, which keeps none: the store also writes each
//     replaced version to its past table, about twice the reference's
//     writing.
//
// There is no vector index on either side: BenchmarkIngestWithHNSW
// measures that.
func BenchmarkIngestVsBinaryCopy(b *testing.B) {
	pct := max(envInt("OUTPOST_BENCH_INGEST_PERCENT", 100), 1)
	rounds := max(envInt("OUTPOST_BENCH_INGEST_ROUNDS", 3), 1)
	for _, size := range []struct{ rows, dims int }{{500000 * pct / 100, 128}, {50000 * pct / 100, 1536}} {
		b.Run(fmt.Sprintf("%dx%d", size.rows, size.dims), func(b *testing.B) {
			pg, pool := vectorDB(b)
			ctx := context.Background()
			url := pg.URL("features")
			dir := harness.TempDir(b)
			t0 := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
			first := writeIngestFiles(b, dir, size.rows, size.dims, t0, 1)
			second := writeIngestFiles(b, dir, size.rows, size.dims, t0.Add(time.Hour), 2)
			for i := 0; i < b.N; i++ {
				store := func(r int) *vectorstore.Store {
					s, _, err := vectorstore.Ensure(ctx, pool, vectorstore.Spec{Name: fmt.Sprintf("s%d_%d", i, r), Dimensions: size.dims,
						Index: vectorstore.Index{Type: vectorstore.NoIndex}, Features: []vectorstore.Feature{{Name: "category", Type: vectorstore.Text}}}, vectorstore.EnsureOptions{})
					if err != nil {
						b.Fatal(err)
					}
					return s
				}
				stores := make([]*vectorstore.Store, rounds)
				for r := range stores {
					stores[r] = store(r)
					psql(b, url, rawTableSQL(fmt.Sprintf("raw%d_%d", i, r), size.dims))
				}
				ingest := func(files ingestFiles) func(int) {
					return func(r int) {
						if _, err := stores[r].IngestFile(ctx, files.parquet, vectorstore.IngestOptions{}); err != nil {
							b.Fatal(err)
						}
					}
				}
				cols := "(key, embedding, event_time, category)"
				empty := abRounds(b, rounds, ingest(first), func(r int) {
					psql(b, url, fmt.Sprintf("\\copy raw%d_%d %s FROM '%s' WITH (FORMAT binary)\n", i, r, cols, first.copy))
				})
				upsert := abRounds(b, rounds, ingest(second), func(r int) {
					t := fmt.Sprintf("raw%d_%d", i, r)
					psql(b, url, fmt.Sprintf(`BEGIN;
CREATE TEMP TABLE staging (key text, embedding vector(%d), event_time timestamptz, category text) ON COMMIT DROP;
\copy staging FROM '%s' WITH (FORMAT binary)
INSERT INTO %s %s SELECT * FROM staging ON CONFLICT (key) DO UPDATE
	SET embedding = EXCLUDED.embedding, event_time = EXCLUDED.event_time, updated_at = now(), category = EXCLUDED.category
	WHERE %s.event_time < EXCLUDED.event_time;
COMMIT;
`, size.dims, second.copy, t, cols, t))
				})
				for _, m := range []struct {
					name  string
					spent [][]time.Duration
				}{{"empty", empty}, {"upsert", upsert}} {
					st, raw := medianOf(m.spent[0]), medianOf(m.spent[1])
					b.ReportMetric(st.Seconds(), m.name+"_store_s")
					b.ReportMetric(raw.Seconds(), m.name+"_copy_s")
					b.ReportMetric(raw.Seconds()/st.Seconds(), m.name+"_copy/store")
					b.Logf("%s %dx%d: store %v, psql binary copy %v (medians of %d); speed ratio store/copy %.2f",
						m.name, size.rows, size.dims, m.spent[0], m.spent[1], rounds, raw.Seconds()/st.Seconds())
				}
			}
		})
	}
}

// BenchmarkIngestWithHNSW measures Parquet ingest into an empty store with
// its default HNSW index, built after the load, against psql's binary
// \copy of the same rows and CREATE INDEX with the same index definition
// (read from the store), 2 parallel maintenance workers and a
// maintenance_work_mem of 2 GB, at least what the store picks. 1.5M x 128
// (OUTPOST_BENCH_INGEST_INDEX_ROWS to change), alternating A B then B A
// (OUTPOST_BENCH_INGEST_INDEX_ROUNDS, default 2); on 2 cores shared with
// other work one 1.5M build took over 8 minutes, so a quick run sets
// OUTPOST_BENCH_INGEST_INDEX_ROWS=250000. shared_buffers is 1 GB,
// so the store's cap on maintenance_work_mem (twice that) lets the graph
// fit.
func BenchmarkIngestWithHNSW(b *testing.B) {
	rows := envInt("OUTPOST_BENCH_INGEST_INDEX_ROWS", 1500000)
	rounds := max(envInt("OUTPOST_BENCH_INGEST_INDEX_ROUNDS", 2), 1)
	const dims = 128
	pg, pool := vectorDB(b)
	ctx := context.Background()
	admin := pg.Connect(b, "postgres")
	if _, err := admin.Exec(ctx, "ALTER SYSTEM SET shared_buffers = '1GB'"); err != nil {
		b.Fatal(err)
	}
	pool.Reset()
	if err := pg.Server.Restart(ctx); err != nil {
		b.Fatal(err)
	}
	url := pg.URL("features")
	files := writeIngestFiles(b, harness.TempDir(b), rows, dims, time.Now().Add(-time.Hour).Truncate(time.Second), 3)
	for i := 0; i < b.N; i++ {
		stores := make([]*vectorstore.Store, rounds)
		for r := range stores {
			s, _, err := vectorstore.Ensure(ctx, pool, vectorstore.Spec{Name: fmt.Sprintf("s%d_%d", i, r), Dimensions: dims,
				Features: []vectorstore.Feature{{Name: "category", Type: vectorstore.Text}}}, vectorstore.EnsureOptions{})
			if err != nil {
				b.Fatal(err)
			}
			stores[r] = s
			psql(b, url, rawTableSQL(fmt.Sprintf("raw%d_%d", i, r), dims))
		}
		var indexDef string
		phases := make([]map[string]time.Duration, rounds)
		spent := abRounds(b, rounds, func(r int) {
			phases[r] = map[string]time.Duration{}
			var phase string
			var since time.Time
			enter := func(next string) {
				if next == phase {
					return
				}
				now := time.Now()
				if phase != "" {
					phases[r][phase] += now.Sub(since)
				}
				phase, since = next, now
			}
			if _, err := stores[r].IngestFile(ctx, files.parquet, vectorstore.IngestOptions{Progress: func(p vectorstore.IngestProgress) { enter(p.Phase) }}); err != nil {
				b.Fatal(err)
			}
			enter("returned")
		}, func(r int) {
			t := fmt.Sprintf("raw%d_%d", i, r)
			if indexDef == "" {
				// The store's index, as PostgreSQL prints it, on the raw table.
				if err := pool.QueryRow(ctx, "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = to_regclass($1) AND NOT indisprimary", fmt.Sprintf("s%d_0", i)).Scan(&indexDef); err != nil {
					b.Fatalf("the store's index (run the store first): %v", err)
				}
			}
			def := strings.Replace(strings.Replace(indexDef, fmt.Sprintf("s%d_0_embedding_idx", i), t+"_idx", 1), fmt.Sprintf("public.s%d_0", i), t, 1)
			psql(b, url, fmt.Sprintf(`\copy %s (key, embedding, event_time, category) FROM '%s' WITH (FORMAT binary)
SET max_parallel_maintenance_workers = 2;
SET maintenance_work_mem = '2GB';
%s;
`, t, files.copy, def))
		})
		st, raw := medianOf(spent[0]), medianOf(spent[1])
		b.ReportMetric(st.Seconds(), "store_s")
		b.ReportMetric(raw.Seconds(), "copy_index_s")
		b.ReportMetric(raw.Seconds()/st.Seconds(), "copy_index/store")
		b.Logf("%dx%d with HNSW: store %v, psql binary copy + CREATE INDEX %v (medians of %d); speed ratio store/reference %.2f",
			rows, dims, spent[0], spent[1], rounds, raw.Seconds()/st.Seconds())
		// Where the store's time went. "indexing" includes the ANALYZE
		// after the build; "calibrating" is the search-quality
		// measurement (calibrate.go), work the reference does not do, so
		// the ratio without it is reported too, for what it is.
		var calibrating, uncalibrated []time.Duration
		for r, p := range phases {
			b.Logf("store, round %d: loading %v, merging %v, indexing %v, calibrating %v", r+1,
				p["loading"].Round(time.Millisecond), p["merging"].Round(time.Millisecond), p["indexing"].Round(time.Millisecond), p["calibrating"].Round(time.Millisecond))
			calibrating = append(calibrating, p["calibrating"])
			uncalibrated = append(uncalibrated, spent[0][r]-p["calibrating"])
		}
		b.ReportMetric(medianOf(calibrating).Seconds(), "store_calibrating_s")
		b.ReportMetric(raw.Seconds()/medianOf(uncalibrated).Seconds(), "copy_index/store_without_calibrating")
	}
}
