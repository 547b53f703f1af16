package vectorstore

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// CSVReader reads CSV with a header row naming the columns. Embeddings are
// in pgvector's text form, "[0.1,0.2,0.3]"; an empty field is NULL.
type CSVReader struct {
	name string
	r    *csv.Reader
	// pos maps each file column to a store column, once the header is read.
	pos    []int
	header []string
	row    int
}

// NewCSVReader reads CSV from r; name identifies it in errors.
func NewCSVReader(r io.Reader, name string) *CSVReader {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	return &CSVReader{name: name, r: cr}
}

// Name implements Reader.
func (c *CSVReader) Name() string { return c.name }

// Next implements Reader.
func (c *CSVReader) Next(columns []string, values []any) (int, error) {
	if c.pos == nil {
		if err := c.readHeader(columns); err != nil {
			return 0, err
		}
	}
	rec, err := c.r.Read()
	if err == io.EOF {
		return 0, io.EOF
	}
	c.row++
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return pe.Line, &RowError{File: c.name, Row: c.row, Line: pe.Line, Reason: pe.Err.Error()}
		}
		return 0, fmt.Errorf("%s: %w", c.name, err)
	}
	line, _ := c.r.FieldPos(0)
	for i := range values {
		values[i] = nil
	}
	for i, v := range rec {
		values[c.pos[i]] = csvText(v)
	}
	return line, nil
}

func (c *CSVReader) readHeader(columns []string) error {
	rec, err := c.r.Read()
	if err == io.EOF {
		return fmt.Errorf("%s: empty file; want a header row naming the columns (key, embedding, event_time, features)", c.name)
	}
	if err != nil {
		return fmt.Errorf("%s: header row: %w", c.name, err)
	}
	idx := columnIndex(columns)
	c.pos = make([]int, len(rec))
	for i, h := range rec {
		h = strings.TrimSpace(h)
		p, ok := idx[h]
		if !ok {
			return unknownColumn(c.name, h, columns)
		}
		c.pos[i] = p
	}
	c.header = append([]string(nil), rec...)
	return nil
}
