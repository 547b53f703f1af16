package vectorstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Index states as Stats and the FeatureStore status report them.
const (
	IndexAbsent   = "absent"
	IndexBuilding = "building"
	IndexValid    = "valid"
	IndexInvalid  = "invalid"
	IndexNone     = "none"
)

// IndexProgress is one reading of pg_stat_progress_create_index.
type IndexProgress struct {
	Phase                    string
	BlocksDone, BlocksTotal  int64
	TuplesDone, TuplesTotal  int64
	Concurrently, SerialHNSW bool
	Index                    string
}

// Percent is how far the current phase is, by blocks or else tuples; 0
// when PostgreSQL does not count the phase.
func (p IndexProgress) Percent() float64 {
	switch {
	case p.BlocksTotal > 0:
		return 100 * float64(p.BlocksDone) / float64(p.BlocksTotal)
	case p.TuplesTotal > 0:
		return 100 * float64(p.TuplesDone) / float64(p.TuplesTotal)
	}
	return 0
}

func (s *Store) indexName() string    { return s.tableName + "_embedding_idx" }
func (s *Store) newIndexName() string { return s.tableName + "_embedding_idx_new" }

// indexSignature identifies what an index was built with; it is kept as
// the index's comment, so a changed spec is noticed without parsing
// pg_get_indexdef.
func (s *Store) indexSignature() string {
	switch s.spec.Index.Type {
	case HNSW:
		return fmt.Sprintf("outpost hnsw %s m=%d ef_construction=%d", s.spec.opClass(), s.spec.Index.M, s.spec.Index.EfConstruction)
	case IVFFlat:
		return fmt.Sprintf("outpost ivfflat %s lists=%d", s.spec.opClass(), s.spec.Index.Lists)
	}
	return ""
}

func (s *Store) createIndexSQL(name string, concurrently bool) string {
	cc := ""
	if concurrently {
		cc = "CONCURRENTLY "
	}
	with := ""
	switch s.spec.Index.Type {
	case HNSW:
		with = fmt.Sprintf("WITH (m = %d, ef_construction = %d)", s.spec.Index.M, s.spec.Index.EfConstruction)
	case IVFFlat:
		with = fmt.Sprintf("WITH (lists = %d)", s.spec.Index.Lists)
	}
	return fmt.Sprintf("CREATE INDEX %s%s ON %s USING %s (%s %s) %s",
		cc, ident(name), s.table, s.spec.Index.Type, s.spec.indexedExpr(), s.spec.opClass(), with)
}

type indexInfo struct {
	exists, valid bool
	comment       string
}

func (s *Store) lookupIndex(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, name string) (indexInfo, error) {
	var info indexInfo
	var comment *string
	err := q.QueryRow(ctx, `SELECT i.indisvalid, obj_description(i.indexrelid, 'pg_class') FROM pg_index i
WHERE i.indexrelid = to_regclass($1)`, pgx.Identifier{"public", name}.Sanitize()).Scan(&info.valid, &comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return info, nil
	}
	if err != nil {
		return info, fmt.Errorf("inspect index %s: %w", name, err)
	}
	info.exists = true
	if comment != nil {
		info.comment = *comment
	}
	return info, nil
}

// ensureIndex builds, rebuilds or drops the embedding index so that it
// matches the spec. On a table with rows it works CONCURRENTLY, so reads
// and ingests go on while it builds: a new index is built beside the old
// one and swapped in, and searches keep an index all along.
func (s *Store) ensureIndex(ctx context.Context, res *EnsureResult, progress func(IndexProgress)) error {
	// A rebuild interrupted before its swap leaves the new index behind,
	// possibly invalid; it is rebuilt from scratch.
	if leftover, err := s.lookupIndex(ctx, s.pool, s.newIndexName()); err != nil {
		return err
	} else if leftover.exists {
		if _, err := s.pool.Exec(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+pgx.Identifier{"public", s.newIndexName()}.Sanitize()); err != nil {
			return fmt.Errorf("drop interrupted index build: %w", err)
		}
	}
	cur, err := s.lookupIndex(ctx, s.pool, s.indexName())
	if err != nil {
		return err
	}
	want := s.indexSignature()
	switch {
	case want == "" && !cur.exists:
		return nil
	case want == "":
		if _, err := s.pool.Exec(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+pgx.Identifier{"public", s.indexName()}.Sanitize()); err != nil {
			return err
		}
		// An index built again later with the same parameters is measured
		// on the data it then holds.
		_, err := s.pool.Exec(ctx, "DELETE FROM "+metaSchema+".search_tuning WHERE name = $1", s.spec.Name)
		return err
	case cur.exists && cur.valid && cur.comment == want:
		return nil
	case !cur.exists:
		res.IndexBuilt = true
		return s.buildIndex(ctx, s.indexName(), true, progress)
	}
	// Invalid (a failed concurrent build) or built with other parameters:
	// build the new one beside it, then swap.
	res.IndexRebuilt = true
	if err := s.buildIndex(ctx, s.newIndexName(), true, progress); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+pgx.Identifier{"public", s.indexName()}.Sanitize()); err != nil {
		return fmt.Errorf("drop old index of %q: %w", s.spec.Name, err)
	}
	if _, err := s.pool.Exec(ctx, fmt.Sprintf("ALTER INDEX %s RENAME TO %s", pgx.Identifier{"public", s.newIndexName()}.Sanitize(), ident(s.indexName()))); err != nil {
		return fmt.Errorf("swap in rebuilt index of %q: %w", s.spec.Name, err)
	}
	return nil
}

// buildIndex builds the index on its own connection, with the settings
// planBuild picks for the table's size (serial HNSW before pgvector 0.8.2,
// CVE-2026-3172).
func (s *Store) buildIndex(ctx context.Context, name string, concurrently bool, progress func(IndexProgress)) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	// reltuples is -1 until the table is first analyzed or vacuumed.
	var rows int64
	if err := conn.QueryRow(ctx, fmt.Sprintf(`SELECT CASE WHEN reltuples >= 0 THEN reltuples::bigint ELSE (SELECT count(*) FROM %s) END
FROM pg_class WHERE oid = to_regclass($1)`, s.table), s.table).Scan(&rows); err != nil {
		return fmt.Errorf("size of feature store %q: %w", s.spec.Name, err)
	}
	plan, err := s.planBuild(ctx, conn, rows)
	if err != nil {
		return err
	}
	// CREATE INDEX CONCURRENTLY cannot run in a transaction, so the
	// settings are the session's, and reset after the statement.
	for _, set := range plan.settings(false) {
		if _, err := conn.Exec(ctx, set); err != nil {
			return fmt.Errorf("build index %s of feature store %q: %w", name, s.spec.Name, err)
		}
	}
	defer func() {
		conn.Exec(context.WithoutCancel(ctx), "RESET max_parallel_maintenance_workers")
		conn.Exec(context.WithoutCancel(ctx), "RESET maintenance_work_mem")
	}()
	var pid uint32 = conn.Conn().PgConn().PID()
	stop := s.watchProgress(ctx, pid, name, concurrently, plan.serial, progress)
	_, err = conn.Exec(ctx, s.createIndexSQL(name, concurrently))
	stop()
	if err != nil {
		return fmt.Errorf("build index %s of feature store %q: %w", name, s.spec.Name, err)
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("COMMENT ON INDEX %s IS %s", pgx.Identifier{"public", name}.Sanitize(), quoteLiteral(s.indexSignature()))); err != nil {
		return fmt.Errorf("label index %s: %w", name, err)
	}
	return nil
}

// buildIndexInTx builds the index inside an ingest's transaction, after a
// bulk load of rows rows into an empty store.
func (s *Store) buildIndexInTx(ctx context.Context, tx pgx.Tx, rows int64) error {
	plan, err := s.planBuild(ctx, tx, rows)
	if err != nil {
		return err
	}
	for _, set := range plan.settings(true) {
		if _, err := tx.Exec(ctx, set); err != nil {
			return fmt.Errorf("build index of feature store %q after loading: %w", s.spec.Name, err)
		}
	}
	if _, err := tx.Exec(ctx, s.createIndexSQL(s.indexName(), false)); err != nil {
		return fmt.Errorf("build index of feature store %q after loading: %w", s.spec.Name, err)
	}
	_, err = tx.Exec(ctx, fmt.Sprintf("COMMENT ON INDEX %s IS %s", pgx.Identifier{"public", s.indexName()}.Sanitize(), quoteLiteral(s.indexSignature())))
	return err
}

// watchProgress polls pg_stat_progress_create_index for the backend pid
// every second until the returned function is called.
func (s *Store) watchProgress(ctx context.Context, pid uint32, name string, concurrently, serial bool, progress func(IndexProgress)) func() {
	if progress == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			p := IndexProgress{Index: name, Concurrently: concurrently, SerialHNSW: serial}
			err := s.pool.QueryRow(ctx, `SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total
FROM pg_stat_progress_create_index WHERE pid = $1`, int32(pid)).Scan(&p.Phase, &p.BlocksDone, &p.BlocksTotal, &p.TuplesDone, &p.TuplesTotal)
			if err == nil {
				progress(p)
			}
		}
	}()
	return func() { cancel(); <-done }
}
