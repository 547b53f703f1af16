package vectorstore

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
)

// TestParquetReaderAcrossPagesAndRowGroups reads, column by column, a file
// cut into many row groups and pages, in both data page versions, with
// a plain float list (read straight from its pages), a dictionary-encoded
// double list (read value by value), empty lists, null features and a
// dictionary-encoded string, and checks every row against what was
// written.
func TestParquetReaderAcrossPagesAndRowGroups(t *testing.T) {
	type row struct {
		Key       string    `parquet:"key"`
		Embedding []float32 `parquet:"embedding,list"`
		Other     []float64 `parquet:"other,list,dict"`
		EventTime time.Time `parquet:"event_time,timestamp(microsecond)"`
		Category  string    `parquet:"category,dict"`
		Views     *int64    `parquet:"views,optional"`
	}
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	rows := make([]row, 3000)
	for i := range rows {
		r := row{Key: "k" + strconv.Itoa(i), EventTime: now.Add(time.Duration(i) * time.Second), Category: "c" + strconv.Itoa(i%7)}
		if i%11 != 5 {
			// Every 11th row has an empty embedding, the rest vary in length.
			r.Embedding = make([]float32, 40+i%3)
			for j := range r.Embedding {
				r.Embedding[j] = float32(i) + float32(j)/64
			}
		}
		r.Other = []float64{float64(i), -float64(i) / 2}
		if i%3 == 0 {
			v := int64(i)
			r.Views = &v
		}
		rows[i] = r
	}
	columns := []string{"key", "embedding", "event_time", "category", "views", "other"}
	for _, version := range []int{1, 2} {
		t.Run("v"+strconv.Itoa(version), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "rows.parquet")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			w := parquet.NewGenericWriter[row](f, parquet.DataPageVersion(version), parquet.PageBufferSize(2048), parquet.MaxRowsPerRowGroup(700))
			for i := 0; i < len(rows); i += 100 {
				if _, err := w.Write(rows[i : i+100]); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			f.Close()
			r, c, err := OpenFile(path)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			values := make([]any, len(columns))
			// Embeddings are checked again at the end: ingest keeps them
			// while the reader goes on, so none may share memory that a
			// later row or page reuses.
			kept := make([][]float32, len(rows))
			for i, want := range rows {
				if _, err := r.Next(columns, values); err != nil {
					t.Fatalf("row %d: %v", i+1, err)
				}
				emb := []float32(values[1].(ownedFloats))
				kept[i] = emb
				if len(emb) != len(want.Embedding) || (len(emb) > 0 && !reflect.DeepEqual(emb, want.Embedding)) {
					t.Fatalf("row %d: embedding %v, want %v", i+1, emb, want.Embedding)
				}
				other := []float32(values[5].(ownedFloats))
				if !reflect.DeepEqual(other, []float32{float32(want.Other[0]), float32(want.Other[1])}) {
					t.Fatalf("row %d: other %v, want %v", i+1, other, want.Other)
				}
				if values[0] != want.Key || !values[2].(time.Time).Equal(want.EventTime) || values[3] != want.Category {
					t.Fatalf("row %d: %v, want %+v", i+1, values, want)
				}
				if (want.Views == nil && values[4] != nil) || (want.Views != nil && values[4] != *want.Views) {
					t.Fatalf("row %d: views %v, want %v", i+1, values[4], want.Views)
				}
			}
			if _, err := r.Next(columns, values); !errors.Is(err, io.EOF) {
				t.Fatalf("after the last row: %v, want io.EOF", err)
			}
			for i, want := range rows {
				if len(kept[i]) > 0 && !reflect.DeepEqual(kept[i], want.Embedding) {
					t.Fatalf("row %d: embedding changed to %v after later rows were read", i+1, kept[i])
				}
			}
		})
	}
}
