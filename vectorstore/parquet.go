package vectorstore

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// ParquetReader reads a Parquet file whose top-level fields are named as
// the store's columns: key (string or integer), embedding (a list of float
// or double), event_time (TIMESTAMP or string) and the features, each in
// its natural Parquet type (string, int64, double, boolean, TIMESTAMP,
// JSON string).
type ParquetReader struct {
	name string
	r    *parquet.Reader
	// leaves describes each leaf column of the file.
	leaves []parquetLeaf
	buf    []parquet.Row
	n, at  int
	row    int
	// floats collects the embedding's values of the current row.
	floats []float32
}

type parquetLeaf struct {
	field string
	store int // position in the store's columns, set on first Next
	kind  parquet.Kind
	// unit is the TIMESTAMP unit, zero if the leaf is no timestamp.
	unit time.Duration
	list bool // a repeated leaf: the embedding's elements
}

// NewParquetReader reads a Parquet file of size bytes from r; name
// identifies it in errors.
func NewParquetReader(r io.ReaderAt, size int64, name string) (*ParquetReader, error) {
	f, err := parquet.OpenFile(r, size)
	if err != nil {
		return nil, fmt.Errorf("%s: not a readable Parquet file: %w", name, err)
	}
	p := &ParquetReader{name: name, r: parquet.NewReader(f), buf: make([]parquet.Row, 128)}
	schema := f.Schema()
	for _, path := range schema.Columns() {
		leaf, _ := schema.Lookup(path...)
		l := parquetLeaf{field: path[0], kind: leaf.Node.Type().Kind(), list: leaf.MaxRepetitionLevel > 0}
		if lt := leaf.Node.Type().LogicalType(); lt != nil {
			if ts, ok := lt.Value.(*format.TimestampType); ok && ts.Unit.Value != nil {
				l.unit = ts.Unit.Value.Duration()
			}
		}
		p.leaves = append(p.leaves, l)
	}
	return p, nil
}

// Name implements Reader.
func (p *ParquetReader) Name() string { return p.name }

// Next implements Reader.
func (p *ParquetReader) Next(columns []string, values []any) (int, error) {
	if p.row == 0 && p.n == 0 {
		idx := columnIndex(columns)
		for i, l := range p.leaves {
			pos, ok := idx[l.field]
			if !ok {
				return 0, unknownColumn(p.name, l.field, columns)
			}
			p.leaves[i].store = pos
		}
	}
	if p.at == p.n {
		n, err := p.r.ReadRows(p.buf)
		if n == 0 {
			if err == nil || errors.Is(err, io.EOF) {
				return 0, io.EOF
			}
			return 0, fmt.Errorf("%s: after row %d: %w", p.name, p.row, err)
		}
		p.n, p.at = n, 0
	}
	r := p.buf[p.at]
	p.at++
	p.row++
	for i := range values {
		values[i] = nil
	}
	var emb []float32
	embPos := -1
	for i := 0; i < len(r); {
		col := r[i].Column()
		l := &p.leaves[col]
		if l.list {
			// The embedding's elements are consecutive values of one
			// column: a tight loop over them is most of the decoding.
			embPos = l.store
			if emb == nil {
				emb = p.floats[:0]
			}
			j := i
			switch l.kind {
			case parquet.Float:
				for ; j < len(r) && r[j].Column() == col; j++ {
					if !r[j].IsNull() {
						emb = append(emb, r[j].Float())
					}
				}
			case parquet.Double:
				for ; j < len(r) && r[j].Column() == col; j++ {
					if !r[j].IsNull() {
						emb = append(emb, float32(r[j].Double()))
					}
				}
			default:
				return 0, &RowError{File: p.name, Row: p.row, Field: l.field, Reason: fmt.Sprintf("want a list of float or double, got a list of %s", l.kind)}
			}
			i = j
			continue
		}
		if !r[i].IsNull() {
			values[l.store] = parquetValue(r[i], *l)
		}
		i++
	}
	if embPos >= 0 {
		// The buffer is reused for the next row: the embedding converter
		// copies it.
		p.floats = emb
		values[embPos] = emb
	}
	return 0, nil
}

func parquetValue(v parquet.Value, l parquetLeaf) any {
	switch l.kind {
	case parquet.Boolean:
		return v.Boolean()
	case parquet.Int32:
		return v.Int32()
	case parquet.Int64:
		if l.unit != 0 {
			return time.Unix(0, 0).UTC().Add(time.Duration(v.Int64()) * l.unit)
		}
		return v.Int64()
	case parquet.Float:
		return v.Float()
	case parquet.Double:
		return v.Double()
	case parquet.ByteArray, parquet.FixedLenByteArray:
		return string(v.ByteArray())
	}
	return fmt.Sprintf("unsupported Parquet type %s", l.kind)
}
