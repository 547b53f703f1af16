package vectorstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Drop removes the store named name from the database: its history view,
// latest and past tables (with their indexes), its recorded spec and its
// entries in the registry, in one transaction, and returns the relations it
// dropped. Only relations the registry records as the store's are dropped
// (or, for a store made before the registry, those an earlier Outpost
// created for it): a table of the same name that Outpost did not create
// for this store is left alone. The read-only role stays: the server's other
// stores share it. Dropping a store that does not exist does nothing.
func Drop(ctx context.Context, pool *pgxpool.Pool, name string) ([]string, error) {
	s := newStore(pool, Spec{Name: name})
	tx, err := pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('outpost.featurestore.' || $1))", s.tableName); err != nil {
		return nil, err
	}
	owned, err := s.owned(ctx, tx)
	if err != nil {
		return nil, err
	}
	legacy, err := s.madeBeforeRegistry(ctx, tx)
	if err != nil {
		return nil, err
	}
	// The view first: it depends on both tables.
	var dropped []string
	for _, rel := range []string{s.tableName + "_history", s.tableName, s.tableName + "_past"} {
		if !owned[rel] && !legacy {
			continue
		}
		var kind *string
		if err := tx.QueryRow(ctx, "SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)", "public."+ident(rel)).Scan(&kind); err != nil && !isNoRows(err) {
			return nil, fmt.Errorf("drop feature store %q: %w", name, err)
		}
		if kind == nil {
			continue
		}
		// A store made before the past table existed has a history table.
		what := "TABLE"
		if *kind == "v" {
			what = "VIEW"
		}
		if _, err := tx.Exec(ctx, "DROP "+what+" public."+ident(rel)); err != nil {
			return nil, fmt.Errorf("drop feature store %q: %w", name, err)
		}
		dropped = append(dropped, "public."+rel)
	}
	if owned != nil {
		if _, err := tx.Exec(ctx, "DELETE FROM "+registry+" WHERE store = $1", name); err != nil {
			return nil, fmt.Errorf("drop feature store %q: forget its tables: %w", name, err)
		}
	}
	// A store refused before Ensure made the metadata tables has none.
	for _, meta := range []struct{ table, what string }{{"feature_stores", "spec"}, {"search_tuning", "search defaults"}} {
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", metaSchema+"."+meta.table).Scan(&exists); err != nil {
			return nil, err
		}
		if !exists {
			continue
		}
		if _, err := tx.Exec(ctx, "DELETE FROM "+metaSchema+"."+meta.table+" WHERE name = $1", name); err != nil {
			return nil, fmt.Errorf("drop feature store %q: forget its %s: %w", name, meta.what, err)
		}
	}
	return dropped, tx.Commit(ctx)
}
