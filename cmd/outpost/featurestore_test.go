package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/outpostdata/outpost/vectorstore"
)

// TestVectorFlag checks --vector as given and as @FILE, and that a bad
// one is named in the error the way it was before vectorstore parsed it.
func TestVectorFlag(t *testing.T) {
	file := filepath.Join(t.TempDir(), "q.txt")
	if err := os.WriteFile(file, []byte("[0.5,1.5]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{"[0.5,1.5]", "0.5, 1.5", "@" + file} {
		if got, err := parseVectorFlag(in); err != nil || !reflect.DeepEqual(got, []float32{0.5, 1.5}) {
			t.Errorf("--vector %s: %v, %v", in, got, err)
		}
	}
	_, err := parseVectorFlag("[1,NaN]")
	if want := `--vector "[1,NaN]": want numbers like [0.1,0.2,0.3]`; err == nil || err.Error() != want {
		t.Errorf("--vector [1,NaN]: %v, want %s", err, want)
	}
	if _, err := parseVectorFlag("@" + file + ".missing"); err == nil {
		t.Error("--vector @ a missing file succeeded")
	}
}

// The ingest says what it measured for filtered searches, which the
// unfiltered figures do not tell: a setting, exact ranking, or why not
// measured.
func TestFilteredDefaultsAreReported(t *testing.T) {
	for _, c := range []struct {
		tuning vectorstore.Tuning
		want   string
	}{
		{vectorstore.Tuning{Knob: "hnsw.ef_search", Value: 160, FilteredMeasured: true, FilteredValue: 80, FilteredRecall: 0.98}, "hnsw.ef_search 80 finds 0.98"},
		{vectorstore.Tuning{Knob: "hnsw.ef_search", Value: 160, FilteredMeasured: true, FilteredValue: 80, FilteredRecall: 0.98}, "filtered searches use hnsw.ef_search 160"},
		{vectorstore.Tuning{Knob: "hnsw.ef_search", Value: 40, FilteredMeasured: true, FilteredValue: 80, FilteredRecall: 0.98}, "filtered searches use hnsw.ef_search 80"},
		{vectorstore.Tuning{Knob: "hnsw.ef_search", FilteredMeasured: true, FilteredValue: 80, FilteredRecall: 0.98}, "unfiltered searches rank exactly, and so do filtered ones"},
		{vectorstore.Tuning{Knob: "ivfflat.probes", FilteredMeasured: true, FilteredRecall: 0.6}, "filtered searches rank exactly"},
		{vectorstore.Tuning{Knob: "hnsw.ef_search", FilteredUnmeasured: "fewer than 10 rows pass the sample filter"}, "not measured (fewer than 10 rows"},
	} {
		if got := filteredDefaults(c.tuning); !strings.Contains(got, c.want) {
			t.Errorf("filteredDefaults(%+v) = %q, want it to say %q", c.tuning, got, c.want)
		}
	}
}
