package vectorstore

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Reader is a stream of input rows: a CSV, JSON Lines or Parquet file, or
// anything else a program produces.
type Reader interface {
	// Name identifies the input in errors, usually its file name.
	Name() string
	// Next fills values with the row's value for each of columns (nil
	// when the row has none) and returns the row's line in a text file
	// (0 when lines mean nothing). At the end it returns io.EOF. A field
	// that is not one of columns is an error naming it. Ingest calls Next
	// from a goroutine of its own, one call at a time, and copies slices
	// it is given, so a Reader may reuse its buffers.
	Next(columns []string, values []any) (line int, err error)
}

// Format of an input file.
type Format string

// Formats.
const (
	CSV     Format = "csv"
	JSONL   Format = "jsonl"
	Parquet Format = "parquet"
)

// FormatOf guesses a file's format from its extension.
func FormatOf(path string) (Format, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		return CSV, nil
	case ".jsonl", ".ndjson", ".json":
		return JSONL, nil
	case ".parquet", ".pq":
		return Parquet, nil
	}
	return "", fmt.Errorf("%s: cannot tell the format from the extension; name it .csv, .jsonl or .parquet", path)
}

// OpenFile opens an input file in the format its extension says. Close the
// returned closer when done.
func OpenFile(path string) (Reader, io.Closer, error) {
	format, err := FormatOf(path)
	if err != nil {
		return nil, nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	name := filepath.Base(path)
	var r Reader
	switch format {
	case CSV:
		r = NewCSVReader(f, name)
	case JSONL:
		r = NewJSONLReader(f, name)
	case Parquet:
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, nil, err
		}
		r, err = NewParquetReader(f, st.Size(), name)
		if err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	return r, f, nil
}

// columnIndex maps names to their position in columns.
func columnIndex(columns []string) map[string]int {
	m := make(map[string]int, len(columns))
	for i, c := range columns {
		m[c] = i
	}
	return m
}

func unknownColumn(file, field string, columns []string) error {
	return fmt.Errorf("%s: column %q is not a column of the feature store (which has %s); remove it or add it to spec.features",
		file, field, strings.Join(columns, ", "))
}
