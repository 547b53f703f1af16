package vectorstore

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// JSONLReader reads JSON Lines: one object per line, fields named as the
// store's columns; the embedding is an array of numbers. Blank lines are
// skipped.
type JSONLReader struct {
	name string
	sc   *bufio.Scanner
	line int
	row  int
	idx  map[string]int
	cols []string
}

// NewJSONLReader reads JSON Lines from r; name identifies it in errors.
func NewJSONLReader(r io.Reader, name string) *JSONLReader {
	sc := bufio.NewScanner(r)
	// A 16000-dimension embedding is about 300 kB of text.
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	return &JSONLReader{name: name, sc: sc}
}

// Name implements Reader.
func (j *JSONLReader) Name() string { return j.name }

// Next implements Reader.
func (j *JSONLReader) Next(columns []string, values []any) (int, error) {
	if j.idx == nil {
		j.idx, j.cols = columnIndex(columns), columns
	}
	for j.sc.Scan() {
		j.line++
		b := bytes.TrimSpace(j.sc.Bytes())
		if len(b) == 0 {
			continue
		}
		j.row++
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(b, &obj); err != nil {
			return j.line, &RowError{File: j.name, Row: j.row, Line: j.line, Reason: "not a JSON object: " + err.Error()}
		}
		for i := range values {
			values[i] = nil
		}
		for k, v := range obj {
			p, ok := j.idx[k]
			if !ok {
				return j.line, &RowError{File: j.name, Row: j.row, Line: j.line, Field: k, Reason: unknownColumn(j.name, k, j.cols).Error()}
			}
			// Copy: the scanner reuses its buffer.
			// Unmarshal gave each RawMessage its own copy of the bytes.
			values[p] = v
		}
		return j.line, nil
	}
	if err := j.sc.Err(); err != nil {
		return j.line, fmt.Errorf("%s: line %d: %w", j.name, j.line+1, err)
	}
	return 0, io.EOF
}
