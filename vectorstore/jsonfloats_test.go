package vectorstore

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestParseJSONFloatsAgreesWithEncodingJSON checks the embedding fast path
// for JSON Lines against json.Unmarshal into []float64: the same float32s
// for every array of numbers, and nil (json.Unmarshal decides) for the
// rest.
func TestParseJSONFloatsAgreesWithEncodingJSON(t *testing.T) {
	for _, in := range []string{
		`[1,2,3]`, ` [ 0.1 , -2.5e-3 ,4E2 ] `, `[-0]`, `[3.4028235e38]`, `[3.5e38]`, `[1e-46]`,
		`[0.30000000000000004,1.0000000596046448]`, `[123456789012345678901234567890]`,
	} {
		var fs []float64
		if err := json.Unmarshal([]byte(in), &fs); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		want := make([]float32, len(fs))
		for i, f := range fs {
			want[i] = float32(f)
		}
		if got := parseJSONFloats([]byte(in)); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %v, want %v", in, got, want)
		}
	}
	for _, in := range []string{`[]`, `[ ]`, `null`, `"[1,2]"`, `["1",2]`, `["1,2"]`, `[1,null]`, `[true]`, `[[1,2]]`, `[{"a":1}]`, `[1e400]`, `{"a":[1]}`} {
		if got := parseJSONFloats([]byte(in)); got != nil {
			t.Errorf("%s: got %v, want nil, for json.Unmarshal to read or refuse", in, got)
		}
	}
}
