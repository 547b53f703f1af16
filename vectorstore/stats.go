package vectorstore

import (
	"context"
	"fmt"
)

// Stats describe a store as `outpost featurestore stats` shows it.
type Stats struct {
	Name  string
	Table string
	// Rows in the latest table (entities); HistoryRows are versions.
	Rows, HistoryRows int64
	Dimensions        int
	VectorType        VectorType
	Distance          Distance
	IndexType         IndexType
	// IndexState is none (spec asks for no index), absent, building,
	// invalid or valid.
	IndexState string
	// IndexBytes is the index's size on disk.
	IndexBytes int64
	// BuildPhase and BuildPercent describe a build in progress.
	BuildPhase   string
	BuildPercent float64
	// TableBytes is the latest table's total size with TOAST.
	TableBytes      int64
	PgvectorVersion string
	// ParallelHNSWBuild is false while pgvector is older than 0.8.2: HNSW
	// indexes are then built serially (CVE-2026-3172).
	ParallelHNSWBuild bool
}

// Stats reads the store's size, index state and pgvector version.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	st := Stats{
		Name: s.spec.Name, Table: s.Table(), Dimensions: s.spec.Dimensions,
		VectorType: s.spec.VectorType, Distance: s.spec.Distance, IndexType: s.spec.Index.Type,
	}
	err := s.pool.QueryRow(ctx, fmt.Sprintf(`SELECT (SELECT count(*) FROM %s), (SELECT count(*) FROM %s),
	pg_total_relation_size(to_regclass($1))`, s.table, s.history), s.table).Scan(&st.Rows, &st.HistoryRows, &st.TableBytes)
	if err != nil {
		return st, fmt.Errorf("stats of %q: %w", s.spec.Name, err)
	}
	if st.PgvectorVersion, err = PgvectorVersion(ctx, s.pool); err != nil {
		return st, err
	}
	st.ParallelHNSWBuild = ParallelHNSWBuildSafe(st.PgvectorVersion)
	st.IndexState, err = s.indexState(ctx, &st)
	return st, err
}

func (s *Store) indexState(ctx context.Context, st *Stats) (string, error) {
	// A build in progress, of the index or of its replacement, from any
	// session.
	var p IndexProgress
	var phase *string
	err := s.pool.QueryRow(ctx, `SELECT phase, coalesce(blocks_done, 0), coalesce(blocks_total, 0), coalesce(tuples_done, 0), coalesce(tuples_total, 0)
FROM pg_stat_progress_create_index WHERE relid = to_regclass($1) LIMIT 1`, s.table).Scan(&phase, &p.BlocksDone, &p.BlocksTotal, &p.TuplesDone, &p.TuplesTotal)
	if err == nil && phase != nil {
		st.BuildPhase = *phase
		st.BuildPercent = p.Percent()
		return IndexBuilding, nil
	}
	info, err := s.lookupIndex(ctx, s.pool, s.indexName())
	if err != nil {
		return "", err
	}
	if info.exists {
		if err := s.pool.QueryRow(ctx, "SELECT pg_relation_size(to_regclass($1))", "public."+ident(s.indexName())).Scan(&st.IndexBytes); err != nil {
			return "", err
		}
	}
	switch {
	case s.spec.Index.Type == NoIndex:
		return IndexNone, nil
	case !info.exists:
		return IndexAbsent, nil
	case !info.valid:
		return IndexInvalid, nil
	}
	return IndexValid, nil
}
