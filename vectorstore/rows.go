package vectorstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/pgvector/pgvector-go"
)

// RowError is a row of an input that cannot be stored. Ingest stops at the
// first one and applies nothing.
type RowError struct {
	// File is the input's name, when it has one.
	File string
	// Row is the 1-based number of the data row (a CSV header is not a
	// row); Line is its line in a text file, 0 for Parquet.
	Row, Line int
	// Field is the column at fault.
	Field  string
	Reason string
}

func (e *RowError) Error() string {
	where := fmt.Sprintf("row %d", e.Row)
	if e.Line > 0 {
		where += fmt.Sprintf(" (line %d)", e.Line)
	}
	if e.File != "" {
		where = e.File + ": " + where
	}
	if e.Field != "" {
		where += ", field " + e.Field
	}
	return where + ": " + e.Reason
}

// csvText is a value read from CSV: text to be parsed into the column's
// type. Values of other Go types are checked strictly against it.
type csvText string

// ownedFloats is an embedding a Reader made for the row alone and never
// touches again, so ingest keeps it without a copy.
type ownedFloats []float32

// halfMax is the largest finite float16; larger values become infinite in
// a halfvec.
const halfMax = 65504

// converter turns one input value into what binary COPY sends for the
// column, or says why it cannot.
type converter func(v any) (any, error)

func (s *Store) embeddingConverter() converter {
	dims, half := s.spec.Dimensions, s.spec.VectorType == HalfVec
	return func(v any) (any, error) {
		var vec []float32
		var err error
		switch x := v.(type) {
		case nil:
			return nil, fmt.Errorf("is missing; every row needs an embedding")
		case csvText:
			vec, err = parseVectorText(string(x))
		case json.RawMessage:
			if vec = parseJSONFloats(x); vec != nil {
				break
			}
			var fs []float64
			if err := json.Unmarshal(x, &fs); err != nil {
				return nil, fmt.Errorf("want a JSON array of numbers, got %s", abbreviate(string(x)))
			}
			vec = make([]float32, len(fs))
			for i, f := range fs {
				vec[i] = float32(f)
			}
		case ownedFloats:
			vec = x
		case []float32:
			// A copy: decoding runs ahead of COPY, and a Reader may reuse
			// its slice for the next row.
			vec = append([]float32(nil), x...)
		case []float64:
			vec = make([]float32, len(x))
			for i, f := range x {
				vec[i] = float32(f)
			}
		default:
			return nil, fmt.Errorf("want a list of numbers, got %T", v)
		}
		if err != nil {
			return nil, err
		}
		if len(vec) != dims {
			return nil, fmt.Errorf("has %d dimensions; the store's embeddings have %d", len(vec), dims)
		}
		for i, f := range vec {
			// All exponent bits set is NaN or ±Inf: one test on the bits
			// instead of two in float64, on every element of every row.
			if math.Float32bits(f)&0x7f800000 == 0x7f800000 {
				return nil, fmt.Errorf("element %d is %v; embeddings must be finite numbers", i, f)
			}
			if half && math.Abs(float64(f)) > halfMax {
				return nil, fmt.Errorf("element %d is %v, beyond the halfvec range of ±65504", i, f)
			}
		}
		if half {
			return pgvector.NewHalfVector(vec), nil
		}
		return pgvector.NewVector(vec), nil
	}
}

// parseJSONFloats reads a JSON array of numbers without reflection, as
// json.Unmarshal into []float64 would and then to float32, or returns nil
// for anything else (an empty array, null, strings, a number beyond
// float64), which json.Unmarshal then reads or explains. The value was
// valid JSON already (its line decoded as an object), so every element
// that strconv reads is a JSON number.
func parseJSONFloats(b []byte) []float32 {
	b = bytes.TrimSpace(b)
	if len(b) < 3 || b[0] != '[' || b[len(b)-1] != ']' {
		return nil
	}
	b = b[1 : len(b)-1]
	out := make([]float32, 0, bytes.Count(b, []byte{','})+1)
	for len(b) > 0 {
		var num []byte
		if i := bytes.IndexByte(b, ','); i >= 0 {
			num, b = b[:i], b[i+1:]
			if len(b) == 0 {
				return nil
			}
		} else {
			num, b = b, nil
		}
		f, err := strconv.ParseFloat(string(bytes.TrimSpace(num)), 64)
		if err != nil {
			return nil
		}
		out = append(out, float32(f))
	}
	return out
}

// parseVectorText reads pgvector's text form "[1,2,3]" (brackets optional).
func parseVectorText(s string) ([]float32, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(strings.TrimPrefix(t, "["), "]")
	if strings.TrimSpace(t) == "" {
		return nil, fmt.Errorf("is empty; want numbers like [0.1,0.2]")
	}
	// Walked comma by comma rather than split: no slice of strings per
	// row.
	out := make([]float32, strings.Count(t, ",")+1)
	for i := range out {
		p := t
		if j := strings.IndexByte(t, ','); j >= 0 {
			p, t = t[:j], t[j+1:]
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 32)
		if err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
				return nil, fmt.Errorf("element %d (%s) is out of the float32 range", i, strings.TrimSpace(p))
			}
			return nil, fmt.Errorf("element %d (%q) is not a number", i, strings.TrimSpace(p))
		}
		out[i] = float32(f)
	}
	return out, nil
}

func keyConverter(v any) (any, error) {
	var k string
	switch x := v.(type) {
	case nil:
	case csvText:
		k = string(x)
	case string:
		k = x
	case json.RawMessage:
		if err := json.Unmarshal(x, &k); err != nil {
			var n json.Number
			d := json.NewDecoder(bytes.NewReader(x))
			d.UseNumber()
			if d.Decode(&n) != nil || strings.ContainsAny(n.String(), ".eE") {
				return nil, fmt.Errorf("want a string or an integer, got %s", abbreviate(string(x)))
			}
			k = n.String()
		}
	case int64:
		k = strconv.FormatInt(x, 10)
	case int32:
		k = strconv.FormatInt(int64(x), 10)
	default:
		return nil, fmt.Errorf("want a string, got %T", v)
	}
	if k == "" {
		return nil, fmt.Errorf("is missing; every row needs a key")
	}
	return k, nil
}

// timeLayouts are accepted for event times and timestamptz features.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999", "2006-01-02"}

// ParseTime reads a time as ingest and --as-of accept it: RFC 3339, with
// a space instead of T, or without a zone (UTC), or a date.
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time; want RFC 3339, for example 2026-05-01T12:00:00Z", s)
}

func timeConverter(v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case time.Time:
		return x, nil
	case csvText:
		if x == "" {
			return nil, nil
		}
		return ParseTime(string(x))
	case string:
		return ParseTime(x)
	case json.RawMessage:
		var s string
		if string(x) == "null" {
			return nil, nil
		}
		if err := json.Unmarshal(x, &s); err != nil {
			return nil, fmt.Errorf("want a time as a string, got %s", abbreviate(string(x)))
		}
		return ParseTime(s)
	}
	return nil, fmt.Errorf("want a time, got %T", v)
}

// featureConverter converts values for a feature column. CSV text is
// parsed (an empty field is NULL); JSON and Parquet values must already
// have the right type.
func featureConverter(t FeatureType) converter {
	switch t {
	case Timestamptz:
		return timeConverter
	case Text:
		return func(v any) (any, error) {
			switch x := v.(type) {
			case nil:
				return nil, nil
			case csvText:
				return string(x), nil
			case string:
				return x, nil
			case json.RawMessage:
				return fromJSON[string](x, "a string")
			}
			return nil, fmt.Errorf("want a string, got %T", v)
		}
	case BigInt:
		return func(v any) (any, error) {
			switch x := v.(type) {
			case nil:
				return nil, nil
			case csvText:
				return fromCSV(x, func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }, "an integer")
			case int64:
				return x, nil
			case int32:
				return int64(x), nil
			case json.RawMessage:
				if string(x) == "null" {
					return nil, nil
				}
				n, err := strconv.ParseInt(string(x), 10, 64)
				if err != nil {
					return nil, fmt.Errorf("want an integer, got %s", abbreviate(string(x)))
				}
				return n, nil
			}
			return nil, fmt.Errorf("want an integer, got %T", v)
		}
	case Double:
		return func(v any) (any, error) {
			switch x := v.(type) {
			case nil:
				return nil, nil
			case csvText:
				return fromCSV(x, func(s string) (float64, error) { return strconv.ParseFloat(s, 64) }, "a number")
			case float64:
				return x, nil
			case float32:
				return float64(x), nil
			case int64:
				return float64(x), nil
			case json.RawMessage:
				return fromJSON[float64](x, "a number")
			}
			return nil, fmt.Errorf("want a number, got %T", v)
		}
	case Boolean:
		return func(v any) (any, error) {
			switch x := v.(type) {
			case nil:
				return nil, nil
			case csvText:
				return fromCSV(x, strconv.ParseBool, "true or false")
			case bool:
				return x, nil
			case json.RawMessage:
				return fromJSON[bool](x, "true or false")
			}
			return nil, fmt.Errorf("want true or false, got %T", v)
		}
	case JSONB:
		return func(v any) (any, error) {
			var raw []byte
			switch x := v.(type) {
			case nil:
				return nil, nil
			case csvText:
				if x == "" {
					return nil, nil
				}
				raw = []byte(x)
			case string:
				raw = []byte(x)
			case []byte:
				raw = append([]byte(nil), x...)
			case json.RawMessage:
				if string(x) == "null" {
					return nil, nil
				}
				raw = x
			default:
				return nil, fmt.Errorf("want JSON, got %T", v)
			}
			if !json.Valid(raw) {
				return nil, fmt.Errorf("is not valid JSON: %s", abbreviate(string(raw)))
			}
			return json.RawMessage(raw), nil
		}
	}
	return func(v any) (any, error) { return nil, fmt.Errorf("unknown feature type %q", t) }
}

func abbreviate(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}

// fromCSV parses one CSV cell of a feature column: an empty cell is SQL
// NULL, a cell parse refuses is an error that says what was wanted.
func fromCSV[T any](x csvText, parse func(string) (T, error), want string) (any, error) {
	if x == "" {
		return nil, nil
	}
	v, err := parse(strings.TrimSpace(string(x)))
	if err != nil {
		return nil, fmt.Errorf("want %s, got %q", want, string(x))
	}
	return v, nil
}

// fromJSON decodes one JSON Lines value of a feature column: null is SQL
// NULL, anything but a T is an error that says what was wanted.
func fromJSON[T any](raw json.RawMessage, want string) (any, error) {
	var v *T
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("want %s, got %s", want, abbreviate(string(raw)))
	}
	if v == nil {
		return nil, nil
	}
	return *v, nil
}
