package vectorstore

import (
	"reflect"
	"testing"
)

// TestParseVector checks the query-vector form `outpost featurestore query
// --vector` takes: pgvector's text form with or without brackets, and
// nothing that is not a finite float32.
func TestParseVector(t *testing.T) {
	for in, want := range map[string][]float32{
		"[0.1,0.2,0.3]":     {0.1, 0.2, 0.3},
		" [ 1 , -2.5e-3 ] ": {1, -2.5e-3},
		"4,5":               {4, 5},
	} {
		got, err := ParseVector(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseVector(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "[]", "[ ]", "[1,,2]", "[1,a]", "[NaN]", "[1,inf]", "[-Infinity]", "[3.5e38]", `{"a":1}`} {
		if got, err := ParseVector(in); err == nil {
			t.Errorf("ParseVector(%q) = %v, want an error", in, got)
		}
	}
}
