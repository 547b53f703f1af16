package vectorstore

import (
	"context"
	"fmt"
	"hash/crc32"

	"github.com/jackc/pgx/v5"
)

// featureIndexName is the B-tree index of an indexed feature. Names are
// deterministic, so a later Ensure finds what an earlier one built; a name
// too long for PostgreSQL (63 bytes) is shortened with a hash, so two
// features never share one.
func (s *Store) featureIndexName(feature string) string {
	name := s.tableName + "_" + feature + "_idx"
	if len(name) <= 63 {
		return name
	}
	return fmt.Sprintf("%s_%08x_idx", name[:50], crc32.ChecksumIEEE([]byte(name)))
}

// ensureFeatureIndexes builds a B-tree index for each indexed feature,
// CONCURRENTLY so that searches and ingests go on, and drops the ones of
// features no longer indexed. An index left invalid by an interrupted
// build is built again.
func (s *Store) ensureFeatureIndexes(ctx context.Context) error {
	for _, f := range s.spec.Features {
		name := s.featureIndexName(f.Name)
		cur, err := s.lookupIndex(ctx, s.pool, name)
		if err != nil {
			return err
		}
		if cur.exists && (!f.Indexed || !cur.valid) {
			if _, err := s.pool.Exec(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+pgx.Identifier{"public", name}.Sanitize()); err != nil {
				return fmt.Errorf("drop index %s of feature %s: %w", name, f.Name, err)
			}
			cur.exists = false
		}
		if !f.Indexed || cur.exists {
			continue
		}
		if _, err := s.pool.Exec(ctx, fmt.Sprintf("CREATE INDEX CONCURRENTLY %s ON %s (%s)", ident(name), s.table, ident(f.Name))); err != nil {
			return fmt.Errorf("index feature %s of feature store %q: %w", f.Name, s.spec.Name, err)
		}
	}
	return nil
}
