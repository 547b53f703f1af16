package vectorstore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/outpostdata/outpost/vectorstore"
)

func TestCSVJSONLinesAndParquetIngestIdentically(t *testing.T) {
	_, pool := newDB(t)
	ctx := context.Background()
	rows := clustered(500, 16, 5, 1)
	dir := t.TempDir()
	files := map[string]func(*testing.T, string, []row){"rows.csv": writeCSV, "rows.jsonl": writeJSONL, "rows.parquet": writeParquet}
	var first []string
	for _, name := range []string{"rows.csv", "rows.jsonl", "rows.parquet"} {
		path := filepath.Join(dir, name)
		files[name](t, path, rows)
		store := "from_" + strings.TrimPrefix(filepath.Ext(name), ".")
		s := ensure(t, pool, vectorstore.Spec{Name: store, Dimensions: 16, Features: testFeatures})
		res, err := s.IngestFile(ctx, path, vectorstore.IngestOptions{})
		if err != nil {
			t.Fatalf("ingest %s: %v", name, err)
		}
		if res.Rows != 500 || res.Inserted != 500 || res.HistoryAppended != 500 || !res.IndexBuiltAfterLoad {
			t.Errorf("ingest %s: %+v, want 500 rows inserted and the index built after loading", name, res)
		}
		var got []string
		r, err := pool.Query(ctx, "SELECT concat_ws('|', key, embedding::text, event_time, category, score, views, active) FROM "+s.Table()+" ORDER BY key")
		if err != nil {
			t.Fatal(err)
		}
		for r.Next() {
			var line string
			if err := r.Scan(&line); err != nil {
				t.Fatal(err)
			}
			got = append(got, line)
		}
		if first == nil {
			first = got
			if len(first) != 500 {
				t.Fatalf("%s: %d rows stored, want 500", name, len(first))
			}
			continue
		}
		if !reflect.DeepEqual(first, got) {
			for i := range first {
				if i >= len(got) || first[i] != got[i] {
					t.Fatalf("%s differs from rows.csv at row %d:\n csv: %s\n %s: %s", name, i, first[i], name, got[min(i, len(got)-1)])
				}
			}
		}
	}
}

func TestNewerEventTimeWinsAndHistoryKeepsEveryVersion(t *testing.T) {
	_, pool := newDB(t)
	ctx := context.Background()
	s := ensure(t, pool, vectorstore.Spec{Name: "items", Dimensions: 3, Features: testFeatures})
	t0 := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
	v1 := row{Key: "a", Embedding: []float32{1, 0, 0}, EventTime: t0.Add(time.Hour), Category: "v1"}
	ingestRows(t, s, []row{v1})
	newer := v1
	newer.EventTime, newer.Category = t0.Add(2*time.Hour), "v2"
	older := v1
	older.EventTime, older.Category = t0, "v0"
	res := ingestRows(t, s, []row{newer})
	if res.Updated != 1 {
		t.Errorf("newer version: %+v, want 1 updated", res)
	}
	res = ingestRows(t, s, []row{older})
	if res.Stale != 1 || res.Updated != 0 {
		t.Errorf("older version: %+v, want 1 stale, 0 updated", res)
	}
	var cat string
	if err := pool.QueryRow(ctx, "SELECT category FROM "+s.Table()+" WHERE key = 'a'").Scan(&cat); err != nil {
		t.Fatal(err)
	}
	if cat != "v2" {
		t.Errorf("latest category = %q, want v2 (the newest event time)", cat)
	}
	var versions []string
	if err := pool.QueryRow(ctx, "SELECT array_agg(category ORDER BY event_time) FROM "+s.Table()+"_history WHERE key = 'a'").Scan(&versions); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(versions, []string{"v0", "v1", "v2"}) {
		t.Errorf("history = %v, want [v0 v1 v2]", versions)
	}
}

func TestBadRowsAreRejectedNamingRowAndFieldWithNothingApplied(t *testing.T) {
	_, pool := newDB(t)
	ctx := context.Background()
	s := ensure(t, pool, vectorstore.Spec{Name: "items", Dimensions: 3, Features: testFeatures})
	good := "k0,\"[1,2,3]\",2026-05-01T00:00:00Z,x,1.5,7,true\n"
	ingest := func(name, body string) error {
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := s.IngestFile(ctx, path, vectorstore.IngestOptions{})
		return err
	}
	if err := ingest("seed.csv", "key,embedding,event_time,category,score,views,active\n"+good); err != nil {
		t.Fatal(err)
	}
	header := "key,embedding,event_time,category,score,views,active\n"
	cases := []struct {
		name, file, body string
		row              int
		field, reason    string
	}{
		{"wrong dimension", "a.csv", header + good + "k1,\"[1,2]\",2026-05-01T00:00:00Z,x,1,1,true\n", 2, "embedding", "has 2 dimensions"},
		{"NaN", "a.csv", header + good + "k1,\"[1,NaN,3]\",2026-05-01T00:00:00Z,x,1,1,true\n", 2, "embedding", "NaN"},
		{"Inf", "a.csv", header + good + "k1,\"[1,2,Inf]\",2026-05-01T00:00:00Z,x,1,1,true\n", 2, "embedding", "+Inf"},
		{"missing key", "a.csv", header + good + ",\"[1,2,3]\",2026-05-01T00:00:00Z,x,1,1,true\n", 2, "key", "missing"},
		{"duplicate key and event time", "a.csv", header + "k9,\"[1,2,3]\",2026-05-01T00:00:00Z,x,1,1,true\n" + good + "k9,\"[3,2,1]\",2026-05-01T00:00:00Z,y,1,1,true\n", 3, "key", "same event_time as row 1"},
		{"wrong type csv", "a.csv", header + good + "k1,\"[1,2,3]\",2026-05-01T00:00:00Z,x,1,many,true\n", 2, "views", "want an integer"},
		{"wrong type jsonl", "a.jsonl", `{"key":"k1","embedding":[1,2,3],"score":"high"}` + "\n", 1, "score", "want a number"},
		{"bad time", "a.jsonl", `{"key":"k1","embedding":[1,2,3],"event_time":"yesterday"}` + "\n", 1, "event_time", "not a time"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := ingest(c.file, c.body)
			var re *vectorstore.RowError
			if !errors.As(err, &re) {
				t.Fatalf("got %v, want a *RowError", err)
			}
			if re.Row != c.row || re.Field != c.field || re.File != c.file || !strings.Contains(re.Reason, c.reason) {
				t.Errorf("got %q (row %d field %s), want row %d field %s with %q", err, re.Row, re.Field, c.row, c.field, c.reason)
			}
			var n, h int
			if err := pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM "+s.Table()+"), (SELECT count(*) FROM "+s.Table()+"_history)").Scan(&n, &h); err != nil {
				t.Fatal(err)
			}
			if n != 1 || h != 1 {
				t.Errorf("after a rejected batch: %d latest rows and %d history rows, want the seed's 1 and 1", n, h)
			}
		})
	}
	t.Run("unknown column", func(t *testing.T) {
		err := ingest("b.csv", "key,embedding,colour\nk1,\"[1,2,3]\",red\n")
		if err == nil || !strings.Contains(err.Error(), `column "colour"`) || !strings.Contains(err.Error(), "b.csv") {
			t.Errorf("got %v, want an error naming b.csv and column colour", err)
		}
	})
}

func TestBulkLoadIntoAnEmptyStoreKeepsTheNewestVersionAndRefusesDuplicates(t *testing.T) {
	_, pool := newDB(t)
	ctx := context.Background()
	t0 := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
	a1 := row{Key: "a", Embedding: []float32{1, 0, 0}, EventTime: t0.Add(time.Hour), Category: "v1"}
	a0, a2, b := a1, a1, a1
	a0.EventTime, a0.Category = t0, "v0"
	a2.EventTime, a2.Category = t0.Add(2*time.Hour), "v2"
	b.Key = "b"

	dup := ensure(t, pool, vectorstore.Spec{Name: "dup", Dimensions: 3, Features: testFeatures})
	path := filepath.Join(t.TempDir(), "dup.parquet")
	writeParquet(t, path, []row{a1, b, a1})
	_, err := dup.IngestFile(ctx, path, vectorstore.IngestOptions{})
	var re *vectorstore.RowError
	if !errors.As(err, &re) || re.Row != 3 || re.Field != "key" || !strings.Contains(re.Reason, "same event_time as row 1") {
		t.Fatalf("duplicate version in a bulk load: got %v, want row 3, field key, naming row 1", err)
	}
	var n, h int
	if err := pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM "+dup.Table()+"), (SELECT count(*) FROM "+dup.Table()+"_history)").Scan(&n, &h); err != nil {
		t.Fatal(err)
	}
	if n != 0 || h != 0 {
		t.Errorf("after a rejected bulk load: %d latest and %d history rows, want none", n, h)
	}
	// The load dropped the primary key and the vector index; the rollback
	// brings both back.
	var indexes []string
	if err := pool.QueryRow(ctx, "SELECT array_agg(indexrelid::regclass::text ORDER BY indexrelid::regclass::text) FROM pg_index WHERE indrelid = 'dup'::regclass").Scan(&indexes); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(indexes, []string{"dup_embedding_idx", "dup_pkey"}) {
		t.Errorf("indexes after a rejected bulk load: %v, want dup_embedding_idx and dup_pkey", indexes)
	}

	s := ensure(t, pool, vectorstore.Spec{Name: "items", Dimensions: 3, Features: testFeatures})
	res := ingestRows(t, s, []row{a1, a2, b, a0})
	if res.Rows != 4 || res.Inserted != 2 || res.Stale != 2 || res.HistoryAppended != 4 || !res.IndexBuiltAfterLoad {
		t.Errorf("bulk load: %+v, want 4 rows, 2 inserted, 2 stale, 4 appended to history, index built after", res)
	}
	var cat string
	if err := pool.QueryRow(ctx, "SELECT category FROM "+s.Table()+" WHERE key = 'a'").Scan(&cat); err != nil {
		t.Fatal(err)
	}
	if cat != "v2" {
		t.Errorf("latest category = %q, want v2 (the newest event time)", cat)
	}
	var versions []string
	if err := pool.QueryRow(ctx, "SELECT array_agg(category ORDER BY event_time) FROM "+s.Table()+"_history WHERE key = 'a'").Scan(&versions); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(versions, []string{"v0", "v1", "v2"}) {
		t.Errorf("history = %v, want [v0 v1 v2]", versions)
	}
}
