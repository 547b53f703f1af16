package bench

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/vectorstore"
)

// BenchmarkParquetRead reads the ingest benchmark's Parquet files with no
// server, the client's share of `outpost featurestore ingest` alone, two
// ways, alternating:
//
//   - store: vectorstore's reader, row by row as ingest consumes it;
//   - generic: parquet-go's typed reader into the struct that wrote the
//     file, the library's own fastest way when the schema is known at
//     compile time (a store's is not).
func BenchmarkParquetRead(b *testing.B) {
	for _, size := range ingestSizes() {
		b.Run(fmt.Sprintf("%dx%d", size.rows, size.dims), func(b *testing.B) {
			vecs := clusteredVectors(size.rows, size.dims, 20, 1)
			now := time.Now().Truncate(time.Second)
			path := filepath.Join(harness.TempDir(b), "rows.parquet")
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			w := parquet.NewGenericWriter[benchRow](f)
			for i, v := range vecs {
				if _, err := w.Write([]benchRow{{Key: "k" + strconv.Itoa(i), Embedding: v, EventTime: now, Category: "c" + strconv.Itoa(i%100)}}); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
			f.Close()
			cols := []string{"key", "embedding", "event_time", "category"}
			store := func() (int, error) {
				r, c, err := vectorstore.OpenFile(path)
				if err != nil {
					return 0, err
				}
				defer c.Close()
				values := make([]any, len(cols))
				n := 0
				for {
					if _, err := r.Next(cols, values); errors.Is(err, io.EOF) {
						return n, nil
					} else if err != nil {
						return n, err
					}
					n++
				}
			}
			generic := func() (int, error) {
				f, err := os.Open(path)
				if err != nil {
					return 0, err
				}
				defer f.Close()
				r := parquet.NewGenericReader[benchRow](f)
				defer r.Close()
				buf := make([]benchRow, 256)
				total := 0
				for {
					n, err := r.Read(buf)
					total += n
					if errors.Is(err, io.EOF) {
						return total, nil
					} else if err != nil {
						return total, err
					}
				}
			}
			ways := []func() (int, error){store, generic}
			var spent [2]time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j := range ways {
					w := (i + j) % len(ways)
					start := time.Now()
					n, err := ways[w]()
					spent[w] += time.Since(start)
					if err != nil || n != size.rows {
						b.Fatalf("read %d of %d rows: %v", n, size.rows, err)
					}
				}
			}
			b.StopTimer()
			per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N*size.rows) }
			b.ReportMetric(per(spent[0]), "store_ns/row")
			b.ReportMetric(per(spent[1]), "generic_ns/row")
			b.ReportMetric(float64(spent[0])/float64(spent[1]), "store/generic")
		})
	}
}
