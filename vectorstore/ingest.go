package vectorstore

import (
	"context"
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

// Ingest loads every row of r in one transaction. In the latest table a
// newer event time wins; every row is appended to history. Nothing is
// applied if any row is bad: the error is a *RowError naming the row and
// field.
//
// Into an empty store, rows stream through binary COPY straight into
// history, and the latest table is filled from it by one INSERT ... SELECT
// (a plain copy when every key is new in the batch): one write per table
// and no staging. Otherwise they stream into a temporary staging table and
// are merged from there.
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

	// The lock keeps a concurrent ingest from filling the store between
	// the emptiness check and the load; readers are not blocked.
	if _, err := tx.Exec(ctx, "LOCK TABLE "+s.table+" IN SHARE ROW EXCLUSIVE MODE"); err != nil {
		return res, fmt.Errorf("ingest into %q: %w", s.spec.Name, err)
	}
	var empty bool
	if err := tx.QueryRow(ctx, fmt.Sprintf("SELECT NOT EXISTS (SELECT 1 FROM %s) AND NOT EXISTS (SELECT 1 FROM %s)", s.table, s.history)).Scan(&empty); err != nil {
		return res, fmt.Errorf("ingest into %q: %w", s.spec.Name, err)
	}

	// A bulk load into an empty store builds the index once, after the
	// rows are in, rather than growing it row by row.
	rebuild := empty && s.spec.Index.Type != NoIndex
	if rebuild {
		if _, err := tx.Exec(ctx, "DROP INDEX IF EXISTS "+pgx.Identifier{"public", s.indexName()}.Sanitize()); err != nil {
			return res, fmt.Errorf("ingest into %q: drop index before bulk load: %w", s.spec.Name, err)
		}
	}

	target, staging := s.history, "outpost_ingest_staging"
	if !empty {
		if _, err := tx.Exec(ctx, fmt.Sprintf(`CREATE TEMP TABLE %s (key text NOT NULL, embedding %s NOT NULL, event_time timestamptz NOT NULL%s) ON COMMIT DROP`,
			staging, s.spec.columnType(), s.featureColumns())); err != nil {
			return res, fmt.Errorf("ingest into %q: staging table: %w", s.spec.Name, err)
		}
		target = staging
	}
	src := s.newCopySource(r, eventTime, func(n int64) {
		res.Rows = n
		report("loading")
	})
	var table pgx.Identifier
	if empty {
		table = pgx.Identifier{"public", s.tableName + "_history"}
	} else {
		table = pgx.Identifier{staging}
	}
	n, err := tx.CopyFrom(ctx, table, s.columns(), src)
	if src.err != nil {
		// The reader's error, not COPY's complaint about the abort.
		return res, src.err
	}
	if err != nil {
		return res, fmt.Errorf("ingest %s into %q: %w", r.Name(), s.spec.Name, err)
	}
	res.Rows = n

	report("merging")
	if empty {
		err = s.fillLatest(ctx, tx, src.seen.repeated, &res)
	} else {
		err = s.merge(ctx, tx, target, src.seen.repeated, &res)
	}
	if err != nil {
		return res, err
	}
	// Only a key with several versions can leave one to prune.
	if !empty || src.seen.repeated {
		if _, err := s.prune(ctx, tx); err != nil {
			return res, err
		}
	}
	if rebuild {
		report("indexing")
		if err := s.buildIndexInTx(ctx, tx); err != nil {
			return res, err
		}
		res.IndexBuiltAfterLoad = true
	}
	if empty && n > 0 && (rebuild || s.spec.hasIndexedFeature()) {
		// Fresh statistics, so the first searches are planned well: a
		// filter on an indexed feature is answered from its B-tree only
		// when the planner knows it is selective. A fraction of the index
		// build's cost; without an index, autovacuum analyzes soon enough.
		if _, err := tx.Exec(ctx, "ANALYZE "+s.table); err != nil {
			return res, fmt.Errorf("ingest into %q: analyze: %w", s.spec.Name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("ingest into %q: commit: %w", s.spec.Name, err)
	}
	report("done")
	return res, nil
}

// fillLatest fills the empty latest table from history, which holds just
// this batch. When no key repeats, history is already one row per key.
func (s *Store) fillLatest(ctx context.Context, tx pgx.Tx, repeated bool, res *IngestResult) error {
	cols := "key, embedding, event_time, updated_at" + s.selectFeatures("")
	from := "SELECT " + cols + " FROM " + s.history
	if repeated {
		from = "SELECT DISTINCT ON (key) " + cols + " FROM " + s.history + " ORDER BY key, event_time DESC"
	}
	tag, err := tx.Exec(ctx, "INSERT INTO "+s.table+" ("+cols+") "+from)
	if err != nil {
		return fmt.Errorf("ingest into %q: fill latest: %w", s.spec.Name, err)
	}
	res.HistoryAppended = res.Rows
	res.Inserted = tag.RowsAffected()
	res.Stale = res.Rows - res.Inserted
	return nil
}

func (s *Store) merge(ctx context.Context, tx pgx.Tx, staging string, repeated bool, res *IngestResult) error {
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

	// The newest version of each key; when no key repeats in the batch,
	// that is every row, without a sort.
	newest := fmt.Sprintf("SELECT key, embedding, event_time, now()%s FROM %s", cols.String(), staging)
	if repeated {
		newest = fmt.Sprintf("SELECT DISTINCT ON (key) key, embedding, event_time, now()%s FROM %s ORDER BY key, event_time DESC", cols.String(), staging)
	}
	var inserted, updated int64
	err = tx.QueryRow(ctx, fmt.Sprintf(`WITH m AS (
	INSERT INTO %[1]s AS l (key, embedding, event_time, updated_at%[2]s)
	%[3]s
	ON CONFLICT (key) DO UPDATE SET embedding = EXCLUDED.embedding, event_time = EXCLUDED.event_time, updated_at = EXCLUDED.updated_at%[4]s
	WHERE l.event_time < EXCLUDED.event_time
	RETURNING (xmax = 0) AS inserted)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM m`,
		s.table, cols.String(), newest, sets.String())).Scan(&inserted, &updated)
	if err != nil {
		return fmt.Errorf("ingest into %q: merge into latest: %w", s.spec.Name, err)
	}
	res.Inserted, res.Updated = inserted, updated
	res.Stale = res.Rows - inserted - updated
	return nil
}

// versionSet remembers the (key, event time) pairs of a batch as COPY
// streams it, to refuse a pair seen twice (which of the two is the version
// is unknowable) with both rows named, and to know whether any key has
// several versions. Times are compared at PostgreSQL's microsecond
// precision.
type versionSet struct {
	first    map[string]version
	more     map[string][]version
	repeated bool
}

type version struct{ row, micros int64 }

func newVersionSet() *versionSet {
	return &versionSet{first: map[string]version{}, more: map[string][]version{}}
}

// add records a row's version and returns the earlier row with the same
// key and event time, or 0.
func (v *versionSet) add(key string, t time.Time, row int64) int64 {
	us := t.Unix()*1e6 + int64(t.Nanosecond())/1e3
	f, ok := v.first[key]
	if !ok {
		v.first[key] = version{row, us}
		return 0
	}
	v.repeated = true
	if f.micros == us {
		return f.row
	}
	for _, o := range v.more[key] {
		if o.micros == us {
			return o.row
		}
	}
	v.more[key] = append(v.more[key], version{row, us})
	return 0
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
	seen      *versionSet
}

func (s *Store) newCopySource(r Reader, eventTime time.Time, progress func(int64)) *copySource {
	cols := s.columns()
	conv := []converter{keyConverter, s.embeddingConverter(), timeConverter}
	for _, f := range s.spec.Features {
		conv = append(conv, featureConverter(f.Type))
	}
	return &copySource{r: r, columns: cols, conv: conv, in: make([]any, len(cols)), out: make([]any, len(cols)), eventTime: eventTime, progress: progress, seen: newVersionSet()}
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
	for i, conv := range c.conv {
		v, err := conv(c.in[i])
		if err != nil {
			c.err = &RowError{File: c.r.Name(), Row: int(c.row), Line: line, Field: c.columns[i], Reason: err.Error()}
			return false
		}
		c.out[i] = v
	}
	if c.out[2] == nil {
		c.out[2] = c.eventTime
	}
	key := c.out[0].(string)
	if earlier := c.seen.add(key, c.out[2].(time.Time), c.row); earlier != 0 {
		c.err = &RowError{File: c.r.Name(), Row: int(c.row), Line: line, Field: "key",
			Reason: fmt.Sprintf("key %q with the same event_time as row %d; give each version of an entity its own event_time", key, earlier)}
		return false
	}
	if c.progress != nil && c.row%progressEvery == 0 {
		c.progress(c.row)
	}
	return true
}

func (c *copySource) Values() ([]any, error) { return c.out, nil }
func (c *copySource) Err() error             { return c.err }
