package controldb

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DB is a connection pool to controldb with its schema in place.
type DB struct {
	Pool *pgxpool.Pool
}

// Close closes the pool.
func (db *DB) Close() { db.Pool.Close() }

// migrations are applied in order, each once, each in its own transaction.
// Append new ones; never edit one that has shipped.
var migrations = []string{
	// 1: the objects the controller has accepted, with their status.
	`CREATE TABLE objects (
		kind        text NOT NULL,
		namespace   text NOT NULL,
		name        text NOT NULL,
		uid         uuid NOT NULL UNIQUE,
		generation  bigint NOT NULL,
		spec_hash   text NOT NULL,
		source_file text NOT NULL DEFAULT '',
		object      jsonb NOT NULL,
		created_at  timestamptz NOT NULL DEFAULT now(),
		updated_at  timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (kind, namespace, name)
	);
	CREATE TABLE manifest_errors (
		source_file text NOT NULL,
		message     text NOT NULL,
		first_seen  timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (source_file, message)
	);
	CREATE TABLE events (
		id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		kind      text NOT NULL,
		namespace text NOT NULL,
		name      text NOT NULL,
		at        timestamptz NOT NULL DEFAULT now(),
		type      text NOT NULL,
		reason    text NOT NULL,
		message   text NOT NULL
	);
	CREATE INDEX events_object ON events (kind, namespace, name, at);
	CREATE TABLE local_ports (
		port      integer PRIMARY KEY,
		namespace text NOT NULL,
		name      text NOT NULL,
		UNIQUE (namespace, name)
	);`,
}

func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("controldb migrations: %w", err)
	}
	for i, stmt := range migrations {
		version := i + 1
		err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			// The lock makes two controllers starting at once apply each
			// migration exactly once.
			if _, err := tx.Exec(ctx, "LOCK TABLE schema_migrations IN EXCLUSIVE MODE"); err != nil {
				return err
			}
			var done bool
			if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)", version).Scan(&done); err != nil || done {
				return err
			}
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", version)
			return err
		})
		if err != nil {
			return fmt.Errorf("controldb migration %d: %w", version, err)
		}
	}
	return nil
}
