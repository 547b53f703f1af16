package vectorstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ensureReader makes the read-only role exist and able to SELECT the
// store's tables and history view, and nothing more: no INSERT, UPDATE, DELETE,
// TRUNCATE, no CREATE in any schema; of the metadata schema it reads only
// the stores' specs, which vectorstore.Open needs.
// It is a NOLOGIN group role; grant it to the login roles of SQL clients
// (GRANT featurestore_reader TO alice), as with pg_read_all_data.
func (s *Store) ensureReader(ctx context.Context) error {
	role := ident(s.spec.ReaderRole)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// Roles are server-wide, so two databases' reconciles may race here.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('outpost.reader-role'))"); err != nil {
		return err
	}
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", s.spec.ReaderRole).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if _, err := tx.Exec(ctx, "CREATE ROLE "+role+" NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT"); err != nil {
			return fmt.Errorf("create read-only role %s: %w", s.spec.ReaderRole, err)
		}
	}
	var db string
	if err := tx.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		return err
	}
	stmts := []string{
		"GRANT CONNECT ON DATABASE " + ident(db) + " TO " + role,
		"GRANT USAGE ON SCHEMA public TO " + role,
		"GRANT SELECT ON " + s.table + ", " + s.past + ", " + s.history + " TO " + role,
		// Only SELECT, even if someone granted more by hand.
		"REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON " + s.table + ", " + s.past + ", " + s.history + " FROM " + role,
	}
	for _, q := range stmts {
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("read-only role %s: %s: %w", s.spec.ReaderRole, q, err)
		}
	}
	if err := grantSpecs(ctx, tx, s.spec.ReaderRole); err != nil {
		return err
	}
	if err := grantTuning(ctx, tx, s.spec.ReaderRole, false); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// grantSpecs lets role read the stores' specs, and nothing else of the
// metadata schema: Open reads a store's spec there, so without it the
// application role (the database's owner) and readers could not use the Go
// API. A spec says what pg_catalog already shows every role (columns,
// index definitions) plus the distance, retention and reader role; the
// ownership registry stays the superuser's.
func grantSpecs(ctx context.Context, tx pgx.Tx, name string) error {
	for _, q := range []string{
		"GRANT USAGE ON SCHEMA " + metaSchema + " TO " + ident(name),
		"GRANT SELECT ON " + metaSchema + ".feature_stores TO " + ident(name),
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("let %s read feature store specs: %s: %w", name, q, err)
		}
	}
	return nil
}
