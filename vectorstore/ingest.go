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
	// Tuning is set when the ingest measured the search defaults again
	// (after building the index, or once the store doubled in rows).
	Tuning *Tuning
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
// newer event time wins; every row becomes a version in history. Nothing
// is applied if any row is bad: the error is a *RowError naming the row and
// field.
//
// Into an empty store, rows stream through binary COPY straight into the
// latest table, with its primary key and vector index dropped for the load
// and built once after it (a sort, instead of a B-tree and a graph grown
// row by row): each row is written once, as by a plain COPY. Versions a
// later one in the batch supersedes then move to the past table. Into a
// store with rows, they stream into a temporary staging table (no WAL,
// session-local buffers) and are merged from there.
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
	if err := tx.QueryRow(ctx, fmt.Sprintf("SELECT NOT EXISTS (SELECT 1 FROM %s) AND NOT EXISTS (SELECT 1 FROM %s)", s.table, s.past)).Scan(&empty); err != nil {
		return res, fmt.Errorf("ingest into %q: %w", s.spec.Name, err)
	}

	var pkey string
	table, staging := pgx.Identifier{"public", s.tableName}, "outpost_ingest_staging"
	if empty {
		// A bulk load into an empty store builds its indexes once, after
		// the rows are in, rather than growing them row by row. Dropping
		// them locks the (empty) table against readers until commit.
		if s.spec.Index.Type != NoIndex {
			if _, err := tx.Exec(ctx, "DROP INDEX IF EXISTS "+pgx.Identifier{"public", s.indexName()}.Sanitize()); err != nil {
				return res, fmt.Errorf("ingest into %q: drop index before bulk load: %w", s.spec.Name, err)
			}
		}
		if pkey, err = s.dropPrimaryKey(ctx, tx); err != nil {
			return res, err
		}
	} else {
		if _, err := tx.Exec(ctx, fmt.Sprintf(`CREATE TEMP TABLE %s (key text NOT NULL, embedding %s NOT NULL, event_time timestamptz NOT NULL%s) ON COMMIT DROP`,
			staging, s.spec.columnType(), s.featureColumns())); err != nil {
			return res, fmt.Errorf("ingest into %q: staging table: %w", s.spec.Name, err)
		}
		table = pgx.Identifier{staging}
	}
	src := s.newCopySource(r, eventTime, func(n int64) {
		res.Rows = n
		report("loading")
	})
	n, err := tx.CopyFrom(ctx, table, s.columns(), src)
	src.close()
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
		err = s.settleBulkLoad(ctx, tx, pkey, src.seen.repeated, &res)
	} else {
		err = s.merge(ctx, tx, staging, src.seen.repeated, &res)
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
	if empty && s.spec.Index.Type != NoIndex {
		report("indexing")
		if err := s.buildIndexInTx(ctx, tx, res.Inserted); err != nil {
			return res, err
		}
		res.IndexBuiltAfterLoad = true
	}
	if empty && n > 0 && (s.spec.Index.Type != NoIndex || s.spec.hasIndexedFeature()) {
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
	stale, err := s.noteGrowth(ctx, res.Inserted)
	if err == nil && (stale || res.IndexBuiltAfterLoad && s.spec.Index.Type != NoIndex) {
		report("calibrating")
		var t Tuning
		if t, err = s.Calibrate(ctx); err == nil && t.Queries > 0 {
			res.Tuning = &t
		}
	}
	if err != nil {
		// The rows are in; only the measurement failed, and searches keep
		// the defaults they had. Ingesting the same input again is safe.
		return res, fmt.Errorf("ingest into %q: %d rows committed, but %w: %w", s.spec.Name, res.Rows, ErrCalibration, err)
	}
	report("done")
	return res, nil
}

// dropPrimaryKey drops the latest table's primary key for a bulk load and
// returns its name, for settleBulkLoad to build it again.
func (s *Store) dropPrimaryKey(ctx context.Context, tx pgx.Tx) (string, error) {
	var name string
	err := tx.QueryRow(ctx, "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'p'", s.table).Scan(&name)
	if errors.Is(err, pgx.ErrNoRows) {
		// Someone dropped it by hand: the load builds it.
		return s.tableName + "_pkey", nil
	}
	if err != nil {
		return "", fmt.Errorf("ingest into %q: primary key: %w", s.spec.Name, err)
	}
	if _, err := tx.Exec(ctx, "ALTER TABLE "+s.table+" DROP CONSTRAINT "+ident(name)); err != nil {
		return "", fmt.Errorf("ingest into %q: drop primary key before bulk load: %w", s.spec.Name, err)
	}
	return name, nil
}

// settleBulkLoad finishes a bulk load into the empty latest table: when a
// key came with several versions, all but the newest move to the past
// table; then the primary key is built again, in one sort.
func (s *Store) settleBulkLoad(ctx context.Context, tx pgx.Tx, pkey string, repeated bool, res *IngestResult) error {
	res.HistoryAppended = res.Rows
	res.Inserted = res.Rows
	if repeated {
		cols := "key, embedding, event_time, updated_at" + s.selectFeatures("")
		tag, err := tx.Exec(ctx, fmt.Sprintf(`WITH superseded AS (
	DELETE FROM %[1]s l USING (SELECT key, max(event_time) AS newest FROM %[1]s GROUP BY key HAVING count(*) > 1) m
	WHERE l.key = m.key AND l.event_time < m.newest
	RETURNING l.*)
INSERT INTO %[2]s (%[3]s) SELECT %[3]s FROM superseded`, s.table, s.past, cols))
		if err != nil {
			return fmt.Errorf("ingest into %q: move superseded versions to %s: %w", s.spec.Name, s.past, err)
		}
		res.Inserted -= tag.RowsAffected()
		res.Stale = tag.RowsAffected()
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s PRIMARY KEY (key)", s.table, ident(pkey))); err != nil {
		return fmt.Errorf("ingest into %q: build primary key after bulk load: %w", s.spec.Name, err)
	}
	return nil
}

// merge applies a staged batch to a store with rows: latest values that a
// newer version replaces move to the past table, the newer versions take
// their place, and the batch's other rows (older than what the store has,
// or superseded within the batch) go to the past table, unless that
// version is already stored.
func (s *Store) merge(ctx context.Context, tx pgx.Tx, staging string, repeated bool, res *IngestResult) error {
	var feats, sets strings.Builder
	for _, f := range s.spec.Features {
		c := ident(f.Name)
		feats.WriteString(", " + c)
		sets.WriteString(fmt.Sprintf(", %s = EXCLUDED.%s", c, c))
	}
	cols := "key, embedding, event_time, updated_at" + feats.String()
	// The newest version of each key in the batch; when no key repeats,
	// that is every row, without a sort.
	newest := fmt.Sprintf("SELECT key, embedding, event_time, now() AS updated_at%s FROM %s", feats.String(), staging)
	if repeated {
		newest = fmt.Sprintf("SELECT DISTINCT ON (key) key, embedding, event_time, now() AS updated_at%s FROM %s ORDER BY key, event_time DESC", feats.String(), staging)
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %[1]s (%[3]s)
SELECT %[4]s FROM %[2]s l JOIN (%[5]s) n USING (key) WHERE l.event_time < n.event_time`,
		s.past, s.table, cols, prefixed("l.", cols), newest)); err != nil {
		return fmt.Errorf("ingest into %q: move replaced versions to %s: %w", s.spec.Name, s.past, err)
	}
	var inserted, updated int64
	err := tx.QueryRow(ctx, fmt.Sprintf(`WITH m AS (
	INSERT INTO %[1]s AS l (%[2]s)
	%[3]s
	ON CONFLICT (key) DO UPDATE SET embedding = EXCLUDED.embedding, event_time = EXCLUDED.event_time, updated_at = EXCLUDED.updated_at%[4]s
	WHERE l.event_time < EXCLUDED.event_time
	RETURNING (xmax = 0) AS inserted)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM m`,
		s.table, cols, newest, sets.String())).Scan(&inserted, &updated)
	if err != nil {
		return fmt.Errorf("ingest into %q: merge into latest: %w", s.spec.Name, err)
	}
	res.Inserted, res.Updated = inserted, updated
	res.Stale = res.Rows - inserted - updated
	// What the batch did not make current: versions already in the latest
	// table are the batch's newest ones, or a repeat of what was there.
	tag, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %[1]s (%[3]s)
SELECT %[5]s, now()%[6]s FROM %[2]s s
WHERE NOT EXISTS (SELECT 1 FROM %[4]s l WHERE l.key = s.key AND l.event_time = s.event_time)
ON CONFLICT (key, event_time) DO NOTHING`,
		s.past, staging, cols, s.table, "s.key, s.embedding, s.event_time", prefixed("s.", feats.String())))
	if err != nil {
		return fmt.Errorf("ingest into %q: append to history: %w", s.spec.Name, err)
	}
	res.HistoryAppended = inserted + updated + tag.RowsAffected()
	return nil
}

// prefixed qualifies each column of a comma-separated list with p.
func prefixed(p, cols string) string {
	parts := strings.Split(cols, ", ")
	for i, c := range parts {
		if c != "" {
			parts[i] = p + c
		}
	}
	return strings.Join(parts, ", ")
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

// newVersionSet makes a set for about rows rows (0 when unknown): a map
// grown once instead of rehashed as it fills.
func newVersionSet(rows int64) *versionSet {
	return &versionSet{first: make(map[string]version, min(rows, 1<<24)), more: map[string][]version{}}
}

// sizeHinter is a Reader that knows how many rows it holds.
type sizeHinter interface{ sizeHint() int64 }

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

// copySource feeds binary COPY from a Reader. Reading and checking rows
// (parsing text, decoding Parquet, looking for NaN) runs in its own
// goroutine, a few batches ahead of the goroutine pgx encodes and sends
// rows in, so the two overlap; only a few batches are held in memory.
type copySource struct {
	// Owned by the decoding goroutine until done is closed.
	r         Reader
	columns   []string
	conv      []converter
	in        []any
	eventTime time.Time
	seen      *versionSet

	batches chan decodedBatch
	stop    chan struct{}
	done    chan struct{}

	// Owned by the consumer (pgx's COPY).
	cur      [][]any
	at       int
	row      int64
	err      error
	progress func(int64)
}

// decodedBatch is rows ready for COPY, or the error that ended the input.
type decodedBatch struct {
	rows [][]any
	err  error
}

const decodeBatch = 256

func (s *Store) newCopySource(r Reader, eventTime time.Time, progress func(int64)) *copySource {
	cols := s.columns()
	conv := []converter{keyConverter, s.embeddingConverter(), timeConverter}
	for _, f := range s.spec.Features {
		conv = append(conv, featureConverter(f.Type))
	}
	var hint int64
	if h, ok := r.(sizeHinter); ok {
		hint = h.sizeHint()
	}
	c := &copySource{r: r, columns: cols, conv: conv, in: make([]any, len(cols)), eventTime: eventTime,
		seen: newVersionSet(hint), progress: progress,
		batches: make(chan decodedBatch, 4), stop: make(chan struct{}), done: make(chan struct{})}
	go c.decode()
	return c
}

// close stops the decoding goroutine and waits for it, after which seen
// may be read.
func (c *copySource) close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
}

func (c *copySource) decode() {
	defer close(c.done)
	defer close(c.batches)
	var row int64
	batch := make([][]any, 0, decodeBatch)
	send := func(b decodedBatch) bool {
		select {
		case c.batches <- b:
			return true
		case <-c.stop:
			return false
		}
	}
	for {
		out, err := c.decodeRow(row + 1)
		if err == io.EOF {
			send(decodedBatch{rows: batch})
			return
		}
		row++
		if err != nil {
			send(decodedBatch{rows: batch, err: err})
			return
		}
		batch = append(batch, out)
		if len(batch) == decodeBatch {
			if !send(decodedBatch{rows: batch}) {
				return
			}
			batch = make([][]any, 0, decodeBatch)
		}
	}
}

// decodeRow reads, converts and checks the row numbered row.
func (c *copySource) decodeRow(row int64) ([]any, error) {
	line, err := c.r.Next(c.columns, c.in)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(c.conv))
	for i, conv := range c.conv {
		in := c.in[i]
		if f, ok := in.(ownedFloats); ok && i != 1 {
			// A list where the store wants no embedding: named in errors
			// as the []float32 it is.
			in = []float32(f)
		}
		v, err := conv(in)
		if err != nil {
			return nil, &RowError{File: c.r.Name(), Row: int(row), Line: line, Field: c.columns[i], Reason: err.Error()}
		}
		out[i] = v
	}
	if out[2] == nil {
		out[2] = c.eventTime
	}
	key := out[0].(string)
	if earlier := c.seen.add(key, out[2].(time.Time), row); earlier != 0 {
		return nil, &RowError{File: c.r.Name(), Row: int(row), Line: line, Field: "key",
			Reason: fmt.Sprintf("key %q with the same event_time as row %d; give each version of an entity its own event_time", key, earlier)}
	}
	return out, nil
}

func (c *copySource) Next() bool {
	if c.err != nil {
		return false
	}
	for c.at == len(c.cur) {
		b, ok := <-c.batches
		if !ok {
			if c.progress != nil {
				c.progress(c.row)
			}
			return false
		}
		if b.err != nil {
			// The batch is lost anyway: the transaction rolls back.
			c.err = b.err
			return false
		}
		c.cur, c.at = b.rows, 0
	}
	c.at++
	c.row++
	if c.progress != nil && c.row%progressEvery == 0 {
		c.progress(c.row)
	}
	return true
}

func (c *copySource) Values() ([]any, error) { return c.cur[c.at-1], nil }
func (c *copySource) Err() error             { return c.err }
