package vectorstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Drop removes the store named name from the database: its history view,
// latest and past tables (with their indexes) and its recorded spec, in one
// transaction. The read-only role stays: the server's other stores share
// it. Dropping a store that does not exist does nothing.
func Drop(ctx context.Context, pool *pgxpool.Pool, name string) error {
	s := newStore(pool, Spec{Name: name})
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('outpost.featurestore.' || $1))", s.tableName); err != nil {
		return err
	}
	// A store made before the past table existed has a history table.
	var historyKind *string
	if err := tx.QueryRow(ctx, "SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)", s.history).Scan(&historyKind); err != nil && !isNoRows(err) {
		return fmt.Errorf("drop feature store %q: %w", name, err)
	}
	dropHistory := "DROP VIEW IF EXISTS " + s.history
	if historyKind != nil && *historyKind == "r" {
		dropHistory = "DROP TABLE IF EXISTS " + s.history
	}
	for _, q := range []string{dropHistory, "DROP TABLE IF EXISTS " + s.table + ", " + s.past} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("drop feature store %q: %w", name, err)
		}
	}
	var meta bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", metaSchema+".feature_stores").Scan(&meta); err != nil {
		return err
	}
	if meta {
		if _, err := tx.Exec(ctx, "DELETE FROM "+metaSchema+".feature_stores WHERE name = $1", name); err != nil {
			return fmt.Errorf("drop feature store %q: forget its spec: %w", name, err)
		}
	}
	return tx.Commit(ctx)
}
