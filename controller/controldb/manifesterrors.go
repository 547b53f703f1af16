package controldb

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ManifestError is a manifest the controller could not accept.
type ManifestError struct {
	File      string
	Message   string
	FirstSeen time.Time
}

// SetManifestErrors replaces the current set of manifest errors, keeping
// when each was first seen.
func (db *DB) SetManifestErrors(ctx context.Context, errs []ManifestError) error {
	files := make([]string, len(errs))
	messages := make([]string, len(errs))
	for i, e := range errs {
		files[i], messages[i] = e.File, e.Message
	}
	return pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM manifest_errors WHERE (source_file, message) NOT IN (
			SELECT * FROM unnest($1::text[], $2::text[]))`, files, messages); err != nil {
			return fmt.Errorf("controldb: manifest errors: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO manifest_errors (source_file, message)
			SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING`, files, messages); err != nil {
			return fmt.Errorf("controldb: manifest errors: %w", err)
		}
		return nil
	})
}

// ManifestErrors returns the current manifest errors by file.
func (db *DB) ManifestErrors(ctx context.Context) ([]ManifestError, error) {
	rows, err := db.Pool.Query(ctx, "SELECT source_file, message, first_seen FROM manifest_errors ORDER BY source_file, message")
	if err != nil {
		return nil, fmt.Errorf("controldb: manifest errors: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (ManifestError, error) {
		var e ManifestError
		err := row.Scan(&e.File, &e.Message, &e.FirstSeen)
		return e, err
	})
}
