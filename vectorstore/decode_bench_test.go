package vectorstore

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
)

// BenchmarkParquetDecode measures the client's share of ingesting a
// Parquet file: reading, converting and checking rows as COPY receives
// them, without a server, so its CPU per row can be profiled alone.
func BenchmarkParquetDecode(b *testing.B) {
	type row struct {
		Key       string    `parquet:"key"`
		Embedding []float32 `parquet:"embedding,list"`
		EventTime time.Time `parquet:"event_time,timestamp(microsecond)"`
		Category  string    `parquet:"category"`
	}
	for _, size := range []struct{ rows, dims int }{{50000, 128}, {5000, 1536}} {
		b.Run(strconv.Itoa(size.dims), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "rows.parquet")
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			w := parquet.NewGenericWriter[row](f)
			rng := rand.New(rand.NewPCG(1, 2))
			now := time.Now().Truncate(time.Second)
			for i := range size.rows {
				v := make([]float32, size.dims)
				for j := range v {
					v[j] = float32(rng.NormFloat64())
				}
				if _, err := w.Write([]row{{Key: "k" + strconv.Itoa(i), Embedding: v, EventTime: now, Category: "c" + strconv.Itoa(i%100)}}); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
			f.Close()
			s := &Store{spec: Spec{Name: "bench", Dimensions: size.dims, Features: []Feature{{Name: "category", Type: Text}}}}
			b.ResetTimer()
			for range b.N {
				r, c, err := OpenFile(path)
				if err != nil {
					b.Fatal(err)
				}
				src := s.newCopySource(r, now, nil)
				n := 0
				for src.Next() {
					if _, err := src.Values(); err != nil {
						b.Fatal(err)
					}
					n++
				}
				src.close()
				c.Close()
				if src.err != nil || n != size.rows {
					b.Fatalf("read %d rows: %v", n, src.err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size.rows), "ns/row")
		})
	}
}
