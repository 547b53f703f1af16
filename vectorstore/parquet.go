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
//
// It reads column by column, page by page, rather than row by row: the
// embedding's elements come out of a page as one []float32, so decoding a
// row costs a copy of its vector instead of a parquet.Value per element,
// which on a bulk load was most of the client's CPU.
type ParquetReader struct {
	name   string
	groups []parquet.RowGroup
	// group is the index of the row group being read; left its rows not
	// yet read.
	group int
	left  int64
	// leaves describes each leaf column of the file, with its cursor in
	// the current row group.
	leaves []parquetLeaf
	row    int
	placed bool
	rows   int64
	// slab is where embeddings are cut from, a few hundred rows' worth at
	// a time: one allocation for many rows. Each row gets its own part,
	// never written again, so COPY may hold it as long as it likes.
	slab []float32
}

type parquetLeaf struct {
	field string
	store int // position in the store's columns, set on first Next
	kind  parquet.Kind
	// unit is the TIMESTAMP unit, zero if the leaf is no timestamp.
	unit time.Duration
	list bool // a repeated leaf: the embedding's elements
	// maxDef is the definition level of a present value.
	maxDef byte

	pages parquet.Pages
	// page is the page being read; it goes back to parquet-go's pool when
	// the next is read, by when every value taken from it has been copied.
	page parquet.Page
	// A scalar leaf's values, read a batch at a time from values.
	values parquet.ValueReader
	buf    []parquet.Value
	at, n  int
	// A list leaf's page: its levels and its present values as floats;
	// lv and fv are the cursors in them.
	rep, def []byte
	floats   []float32
	lv, fv   int
	// own backs floats when they are converted, not read in place.
	own []float32
	// scratch holds a page's values when they must be decoded one by one.
	scratch []parquet.Value
}

// NewParquetReader reads a Parquet file of size bytes from r; name
// identifies it in errors.
func NewParquetReader(r io.ReaderAt, size int64, name string) (*ParquetReader, error) {
	f, err := parquet.OpenFile(r, size)
	if err != nil {
		return nil, fmt.Errorf("%s: not a readable Parquet file: %w", name, err)
	}
	p := &ParquetReader{name: name, groups: f.RowGroups(), group: -1, rows: f.NumRows()}
	schema := f.Schema()
	for _, path := range schema.Columns() {
		leaf, _ := schema.Lookup(path...)
		l := parquetLeaf{field: path[0], kind: leaf.Node.Type().Kind(), list: leaf.MaxRepetitionLevel > 0, maxDef: byte(leaf.MaxDefinitionLevel)}
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

// sizeHint implements sizeHinter: a Parquet file says how many rows it has.
func (p *ParquetReader) sizeHint() int64 { return p.rows }

// Next implements Reader.
func (p *ParquetReader) Next(columns []string, values []any) (int, error) {
	if !p.placed {
		idx := columnIndex(columns)
		for i, l := range p.leaves {
			pos, ok := idx[l.field]
			if !ok {
				return 0, unknownColumn(p.name, l.field, columns)
			}
			p.leaves[i].store = pos
		}
		p.placed = true
	}
	for p.left == 0 {
		if err := p.nextGroup(); err != nil {
			return 0, err
		}
	}
	p.left--
	p.row++
	for i := range values {
		values[i] = nil
	}
	for i := range p.leaves {
		l := &p.leaves[i]
		if l.list {
			if l.kind != parquet.Float && l.kind != parquet.Double {
				return 0, &RowError{File: p.name, Row: p.row, Field: l.field, Reason: fmt.Sprintf("want a list of float or double, got a list of %s", l.kind)}
			}
			emb, err := l.readList(&p.slab)
			if err != nil {
				return 0, p.fail(err)
			}
			// A slice of its own: ingest may keep it without a copy.
			values[l.store] = ownedFloats(emb)
			continue
		}
		v, err := l.readValue()
		if err != nil {
			return 0, p.fail(err)
		}
		if !v.IsNull() {
			values[l.store] = parquetValue(v, *l)
		}
	}
	return 0, nil
}

func (p *ParquetReader) fail(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%s: row %d: %w", p.name, p.row, err)
}

// nextGroup moves every leaf to the next row group, or returns io.EOF.
func (p *ParquetReader) nextGroup() error {
	for i := range p.leaves {
		if l := &p.leaves[i]; l.pages != nil {
			l.release()
			l.pages.Close()
			l.pages = nil
		}
	}
	p.group++
	if p.group >= len(p.groups) {
		return io.EOF
	}
	g := p.groups[p.group]
	chunks := g.ColumnChunks()
	for i := range p.leaves {
		l := &p.leaves[i]
		l.pages = chunks[i].Pages()
		l.values, l.at, l.n = nil, 0, 0
		l.rep, l.def, l.floats, l.lv, l.fv = nil, nil, nil, 0, 0
	}
	p.left = g.NumRows()
	return nil
}

// readValue returns a scalar leaf's value of the next row.
func (l *parquetLeaf) readValue() (parquet.Value, error) {
	for l.at == l.n {
		if l.values == nil {
			page, err := l.pages.ReadPage()
			if err != nil {
				return parquet.Value{}, err
			}
			l.release()
			l.page = page
			l.values = page.Values()
			if l.buf == nil {
				l.buf = make([]parquet.Value, 256)
			}
		}
		n, err := l.values.ReadValues(l.buf)
		l.at, l.n = 0, n
		if errors.Is(err, io.EOF) {
			l.values = nil
		} else if err != nil {
			return parquet.Value{}, err
		}
	}
	l.at++
	return l.buf[l.at-1], nil
}

// release gives the page being read back to parquet-go.
func (l *parquetLeaf) release() {
	if l.page != nil {
		parquet.Release(l.page)
		l.page = nil
	}
}

// readList returns the present elements of a list leaf's next row, cut
// from slab. A row starts at repetition level 0 and may, in files written
// with version 1 data pages, go on into the next page.
func (l *parquetLeaf) readList(slab *[]float32) ([]float32, error) {
	if l.lv == len(l.rep) {
		if err := l.readPage(); err != nil {
			return nil, err
		}
	}
	if l.rep[l.lv] != 0 {
		return nil, fmt.Errorf("column %s: list values out of step with rows", l.field)
	}
	start := l.lv
	var out []float32
	for {
		for l.lv++; l.lv < len(l.rep) && l.rep[l.lv] != 0; l.lv++ {
		}
		present := 0
		for _, d := range l.def[start:l.lv] {
			if d == l.maxDef {
				present++
			}
		}
		if out == nil {
			out = cut(slab, present)
		}
		out = append(out, l.floats[l.fv:l.fv+present]...)
		l.fv += present
		if l.lv < len(l.rep) {
			return out, nil
		}
		// The row may go on in the next page, which then starts with
		// repetition levels above 0.
		if err := l.readPage(); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		if l.rep[0] == 0 {
			return out, nil
		}
		start = 0
		l.lv = 0
	}
}

// readPage loads a list leaf's next page: its levels and the floats of its
// present values.
func (l *parquetLeaf) readPage() error {
	for {
		page, err := l.pages.ReadPage()
		if err != nil {
			return err
		}
		l.release()
		l.page = page
		n := int(page.NumValues())
		if n == 0 {
			continue
		}
		l.rep, l.def, l.lv, l.fv = page.RepetitionLevels(), page.DefinitionLevels(), 0, 0
		if len(l.def) != n {
			// No definition levels: every value is present.
			l.def = fillLevels(l.def, n, l.maxDef)
		}
		present := 0
		for _, d := range l.def {
			if d == l.maxDef {
				present++
			}
		}
		// A plain page holds its present values in one array; a
		// dictionary-encoded one holds indexes, so it is read value by
		// value.
		if page.Dictionary() == nil {
			data := page.Data()
			switch l.kind {
			case parquet.Float:
				if fs := data.Float(); len(fs) == present {
					// Read in place: rows copy their part out before the
					// page is released.
					l.floats = fs
					return nil
				}
			case parquet.Double:
				if ds := data.Double(); len(ds) == present {
					l.floats = l.own[:0]
					for _, d := range ds {
						l.floats = append(l.floats, float32(d))
					}
					l.own = l.floats
					return nil
				}
			}
		}
		if err := l.decodeFloats(page, n); err != nil {
			return err
		}
		return nil
	}
}

// decodeFloats reads a page's values one by one into floats, and its
// levels from them.
func (l *parquetLeaf) decodeFloats(page parquet.Page, n int) error {
	if cap(l.scratch) < n {
		l.scratch = make([]parquet.Value, n)
	}
	vals := l.scratch[:n]
	got, err := page.Values().ReadValues(vals)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	rep, def := make([]byte, got), make([]byte, got)
	l.floats = l.own[:0]
	for i, v := range vals[:got] {
		rep[i], def[i] = byte(v.RepetitionLevel()), byte(v.DefinitionLevel())
		if v.IsNull() {
			continue
		}
		if l.kind == parquet.Double {
			l.floats = append(l.floats, float32(v.Double()))
		} else {
			l.floats = append(l.floats, v.Float())
		}
	}
	l.rep, l.def, l.own = rep, def, l.floats
	return nil
}

// cut returns an empty slice with room for n floats, carved from the end
// of slab, which grows by a new array when full.
func cut(slab *[]float32, n int) []float32 {
	s := *slab
	if cap(s)-len(s) < n {
		s = make([]float32, 0, max(n*256, 1<<16))
	}
	*slab = s[:len(s)+n]
	return s[len(s) : len(s) : len(s)+n]
}

func fillLevels(b []byte, n int, level byte) []byte {
	b = make([]byte, n)
	for i := range b {
		b[i] = level
	}
	return b
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
