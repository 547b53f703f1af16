package vectorstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// IngestOptions tune Ingest. The zero value is fine.
type IngestOptions struct {
	// EventTime is the event time of rows that have none; zero means the
	// time the ingest started.
	EventTime time.Time
	// Progress, if set, is called as the ingest goes: every 10,000 rows
	// while loading, and once when each later phase starts.
	Progress func(IngestProgress)
}

// IngestProgress reports how far an ingest is.
type IngestProgress struct {
	// Phase is loading, checking, merging, indexing or done.
	Phase string
	Rows  int64
}

// IngestResult says what an ingest changed.
type IngestResult struct {
	// Rows read from the input.
	Rows int64
	// Inserted are keys new to the store; Updated are keys whose latest
	// values the batch replaced; Stale rows were older than what the store
	// had and went to history only.
	Inserted, Updated, Stale int64
	// HistoryAppended are versions added to history; a version already
	// there (same key and event time) is not added again.
	HistoryAppended int64
	// IndexBuiltAfterLoad is true when the store was empty and its index
	// was built once, after the rows were loaded.
	IndexBuiltAfterLoad bool
}

const progressEvery = 10000

// columns are the store's input columns, as readers see them.
func (s *Store) columns() []string {
	cols := []string{"key", "embedding", "event_time"}
	for _, f := range s.spec.Features {
		cols = append(cols, f.Name)
	}
	return cols
}

// IngestFile ingests a CSV, JSON Lines or Parquet file, by its extension.
func (s *Store) IngestFile(ctx context.Context, path string, opts IngestOptions) (IngestResult, error) {
	r, c, err := OpenFile(path)
	if err != nil {
		return IngestResult{}, err
	}
	defer c.Close()
	return s.Ingest(ctx, r, opts)
}

// Ingest loads every row of r in one transaction: rows stream through
// binary COPY into a staging table, are checked, then merged. In the
// latest table a newer event time wins; every row is appended to history.
// Nothing is applied if any row is bad: the error is a *RowError naming
// the row and field.
func (s *Store) Ingest(ctx context.Context, r Reader, opts IngestOptions) (IngestResult, error) {
	var res IngestResult
	eventTime := opts.EventTime
	if eventTime.IsZero() {
		eventTime = time.Now()
	}
	report := func(phase string) {
		if opts.Progress != nil {
			opts.Progress(IngestProgress{Phase: phase, Rows: res.Rows})
		}
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("ingest into %q: %w", s.spec.Name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	staging := "outpost_ingest_staging"
	if _, err := tx.Exec(ctx, fmt.Sprintf(`CREATE TEMP TABLE %s (_row bigint NOT NULL, key text NOT NULL, embedding %s NOT NULL, event_time timestamptz NOT NULL%s) ON COMMIT DROP`,
		staging, s.spec.columnType(), s.featureColumns())); err != nil {
		return res, fmt.Errorf("ingest into %q: staging table: %w", s.spec.Name, err)
	}
	src := s.newCopySource(r, eventTime, func(n int64) {
		res.Rows = n
		report("loading")
	})
	copyCols := append([]string{"_row"}, s.columns()...)
	n, err := tx.CopyFrom(ctx, pgx.Identifier{staging}, copyCols, src)
	if src.err != nil {
		// The reader's error, not COPY's complaint about the abort.
		return res, src.err
	}
	if err != nil {
		return res, fmt.Errorf("ingest %s into %q: %w", r.Name(), s.spec.Name, err)
	}
	res.Rows = n

	report("checking")
	if err := s.checkDuplicates(ctx, tx, staging, r.Name()); err != nil {
		return res, err
	}

	// A bulk load into an empty store builds the index once, after the
	// rows are in, rather than growing it row by row. The lock keeps a
	// concurrent ingest from filling the table meanwhile.
	rebuild := false
	if s.spec.Index.Type != NoIndex {
		if _, err := tx.Exec(ctx, "LOCK TABLE "+s.table+" IN SHARE ROW EXCLUSIVE MODE"); err != nil {
			return res, err
		}
		var empty bool
		if err := tx.QueryRow(ctx, "SELECT NOT EXISTS (SELECT 1 FROM "+s.table+")").Scan(&empty); err != nil {
			return res, err
		}
		if empty && n > 0 {
			rebuild = true
			if _, err := tx.Exec(ctx, "DROP INDEX IF EXISTS "+pgx.Identifier{"public", s.indexName()}.Sanitize()); err != nil {
				return res, fmt.Errorf("ingest into %q: drop index before bulk load: %w", s.spec.Name, err)
			}
		}
	}

	report("merging")
	if err := s.merge(ctx, tx, staging, &res); err != nil {
		return res, err
	}
	if _, err := s.prune(ctx, tx); err != nil {
		return res, err
	}
	if rebuild {
		report("indexing")
		if err := s.buildIndexInTx(ctx, tx); err != nil {
			return res, err
		}
		res.IndexBuiltAfterLoad = true
	}
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("ingest into %q: commit: %w", s.spec.Name, err)
	}
	report("done")
	return res, nil
}

// checkDuplicates refuses a batch holding the same key twice with the same
// event time: which of the two is the version is unknowable.
func (s *Store) checkDuplicates(ctx context.Context, tx pgx.Tx, staging, file string) error {
	var key string
	var rows []int64
	err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT key, array_agg(_row ORDER BY _row) FROM %s
GROUP BY key, event_time HAVING count(*) > 1 ORDER BY min(_row) LIMIT 1`, staging)).Scan(&key, &rows)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ingest into %q: check duplicates: %w", s.spec.Name, err)
	}
	return &RowError{File: file, Row: int(rows[1]), Field: "key",
		Reason: fmt.Sprintf("key %q with the same event_time as row %d; give each version of an entity its own event_time", key, rows[0])}
}

func (s *Store) merge(ctx context.Context, tx pgx.Tx, staging string, res *IngestResult) error {
	var cols, sets strings.Builder
	for _, f := range s.spec.Features {
		c := ident(f.Name)
		cols.WriteString(", " + c)
		sets.WriteString(fmt.Sprintf(", %s = EXCLUDED.%s", c, c))
	}
	tag, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (key, embedding, event_time, updated_at%s)
SELECT key, embedding, event_time, now()%s FROM %s
ON CONFLICT (key, event_time) DO NOTHING`, s.history, cols.String(), cols.String(), staging))
	if err != nil {
		return fmt.Errorf("ingest into %q: append to history: %w", s.spec.Name, err)
	}
	res.HistoryAppended = tag.RowsAffected()

	var inserted, updated int64
	err = tx.QueryRow(ctx, fmt.Sprintf(`WITH m AS (
	INSERT INTO %[1]s AS l (key, embedding, event_time, updated_at%[2]s)
	SELECT DISTINCT ON (key) key, embedding, event_time, now()%[2]s FROM %[3]s ORDER BY key, event_time DESC
	ON CONFLICT (key) DO UPDATE SET embedding = EXCLUDED.embedding, event_time = EXCLUDED.event_time, updated_at = EXCLUDED.updated_at%[4]s
	WHERE l.event_time < EXCLUDED.event_time
	RETURNING (xmax = 0) AS inserted)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM m`,
		s.table, cols.String(), staging, sets.String())).Scan(&inserted, &updated)
	if err != nil {
		return fmt.Errorf("ingest into %q: merge into latest: %w", s.spec.Name, err)
	}
	res.Inserted, res.Updated = inserted, updated
	res.Stale = res.Rows - inserted - updated
	return nil
}

// copySource feeds binary COPY from a Reader, converting and checking each
// row as it goes, so nothing is held in memory but the current row.
type copySource struct {
	r         Reader
	columns   []string
	conv      []converter
	in        []any
	out       []any
	eventTime time.Time
	row       int64
	err       error
	progress  func(int64)
}

func (s *Store) newCopySource(r Reader, eventTime time.Time, progress func(int64)) *copySource {
	cols := s.columns()
	conv := []converter{keyConverter, s.embeddingConverter(), timeConverter}
	for _, f := range s.spec.Features {
		conv = append(conv, featureConverter(f.Type))
	}
	return &copySource{r: r, columns: cols, conv: conv, in: make([]any, len(cols)), out: make([]any, len(cols)+1), eventTime: eventTime, progress: progress}
}

func (c *copySource) Next() bool {
	if c.err != nil {
		return false
	}
	line, err := c.r.Next(c.columns, c.in)
	if err == io.EOF {
		if c.progress != nil {
			c.progress(c.row)
		}
		return false
	}
	c.row++
	if err != nil {
		c.err = err
		return false
	}
	c.out[0] = c.row
	for i, conv := range c.conv {
		v, err := conv(c.in[i])
		if err != nil {
			c.err = &RowError{File: c.r.Name(), Row: int(c.row), Line: line, Field: c.columns[i], Reason: err.Error()}
			return false
		}
		c.out[i+1] = v
	}
	if c.out[3] == nil {
		c.out[3] = c.eventTime
	}
	if c.progress != nil && c.row%progressEvery == 0 {
		c.progress(c.row)
	}
	return true
}

func (c *copySource) Values() ([]any, error) { return c.out, nil }
func (c *copySource) Err() error             { return c.err }
