package controldb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Record is one accepted object as the controller last saw it: identity,
// the generation its spec has reached, the file it came from (dir source) and
// the whole object with its status, as JSON.
type Record struct {
	Kind, Namespace, Name string
	UID                   string
	Generation            int64
	// SpecHash identifies the spec; a new hash means a new generation.
	SpecHash   string
	SourceFile string
	Object     json.RawMessage
	CreatedAt  time.Time
}

// Objects returns the records of one kind, or of every kind when kind is
// empty, ordered by kind, namespace and name.
func (db *DB) Objects(ctx context.Context, kind string) ([]Record, error) {
	rows, err := db.Pool.Query(ctx, `
		SELECT kind, namespace, name, uid::text, generation, spec_hash, source_file, object, created_at
		FROM objects WHERE $1 = '' OR kind = $1 ORDER BY kind, namespace, name`, kind)
	if err != nil {
		return nil, fmt.Errorf("controldb: list %s: %w", kind, err)
	}
	recs, err := pgx.CollectRows(rows, scanRecord)
	if err != nil {
		return nil, fmt.Errorf("controldb: list %s: %w", kind, err)
	}
	return recs, nil
}

// Object returns one record; ok is false when there is none.
func (db *DB) Object(ctx context.Context, kind, namespace, name string) (rec Record, ok bool, err error) {
	rows, err := db.Pool.Query(ctx, `
		SELECT kind, namespace, name, uid::text, generation, spec_hash, source_file, object, created_at
		FROM objects WHERE kind = $1 AND namespace = $2 AND name = $3`, kind, namespace, name)
	if err != nil {
		return rec, false, fmt.Errorf("controldb: get %s %s/%s: %w", kind, namespace, name, err)
	}
	rec, err = pgx.CollectOneRow(rows, scanRecord)
	if errors.Is(err, pgx.ErrNoRows) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, fmt.Errorf("controldb: get %s %s/%s: %w", kind, namespace, name, err)
	}
	return rec, true, nil
}

func scanRecord(row pgx.CollectableRow) (Record, error) {
	var r Record
	err := row.Scan(&r.Kind, &r.Namespace, &r.Name, &r.UID, &r.Generation, &r.SpecHash, &r.SourceFile, &r.Object, &r.CreatedAt)
	return r, err
}

// PutObject inserts or replaces a record. The uid of an existing record
// never changes, and neither does a stored status.verification: that field
// belongs to `outpost backup verify` (SetVerification), and a controller
// pass that read the object before a verify finished must not undo it.
func (db *DB) PutObject(ctx context.Context, r Record) error {
	_, err := db.Pool.Exec(ctx, `
		INSERT INTO objects (kind, namespace, name, uid, generation, spec_hash, source_file, object)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (kind, namespace, name) DO UPDATE SET
			generation = EXCLUDED.generation, spec_hash = EXCLUDED.spec_hash,
			source_file = EXCLUDED.source_file, updated_at = now(),
			object = CASE WHEN objects.object #> '{status,verification}' IS NULL THEN EXCLUDED.object
				ELSE jsonb_set(EXCLUDED.object, '{status,verification}', objects.object #> '{status,verification}') END`,
		r.Kind, r.Namespace, r.Name, r.UID, r.Generation, r.SpecHash, r.SourceFile, r.Object)
	if err != nil {
		return fmt.Errorf("controldb: save %s %s/%s: %w", r.Kind, r.Namespace, r.Name, err)
	}
	return nil
}

// PutObjectKeepStatus is PutObject for an object whose status another
// writer owns (the usage loop writes the DataController's): an existing
// record keeps the status it has at the moment of the write, whatever status
// r carries. Keeping it inside the one statement is what makes it safe: a
// status read earlier and written back here would undo a status update
// made in between.
func (db *DB) PutObjectKeepStatus(ctx context.Context, r Record) error {
	_, err := db.Pool.Exec(ctx, `
		INSERT INTO objects (kind, namespace, name, uid, generation, spec_hash, source_file, object)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (kind, namespace, name) DO UPDATE SET
			generation = EXCLUDED.generation, spec_hash = EXCLUDED.spec_hash,
			source_file = EXCLUDED.source_file, updated_at = now(),
			object = CASE WHEN objects.object ? 'status'
				THEN jsonb_set(EXCLUDED.object, '{status}', objects.object->'status')
				ELSE EXCLUDED.object - 'status' END`,
		r.Kind, r.Namespace, r.Name, r.UID, r.Generation, r.SpecHash, r.SourceFile, r.Object)
	if err != nil {
		return fmt.Errorf("controldb: save %s %s/%s: %w", r.Kind, r.Namespace, r.Name, err)
	}
	return nil
}

// DeleteObject removes a record and its events.
func (db *DB) DeleteObject(ctx context.Context, kind, namespace, name string) error {
	return pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM objects WHERE kind = $1 AND namespace = $2 AND name = $3", kind, namespace, name); err != nil {
			return fmt.Errorf("controldb: delete %s %s/%s: %w", kind, namespace, name, err)
		}
		if _, err := tx.Exec(ctx, "DELETE FROM events WHERE kind = $1 AND namespace = $2 AND name = $3", kind, namespace, name); err != nil {
			return fmt.Errorf("controldb: delete events of %s %s/%s: %w", kind, namespace, name, err)
		}
		return nil
	})
}

// SetVerification stores the result of verifying the backup with ID
// backupID of namespace/instance into the status.verification of the
// Backups that recorded it, and returns their names; none means no Backup
// object describes that backup (one made with `outpost backup create`).
func (db *DB) SetVerification(ctx context.Context, namespace, instance, backupID string, verification json.RawMessage) ([]string, error) {
	rows, err := db.Pool.Query(ctx, `
		UPDATE objects SET updated_at = now(),
			object = jsonb_set(object, '{status,verification}', $4::jsonb)
		WHERE kind = 'Backup' AND namespace = $1 AND object #>> '{spec,instance,name}' = $2
			AND object #>> '{status,backupID}' = $3
		RETURNING name`, namespace, instance, backupID, string(verification))
	if err != nil {
		return nil, fmt.Errorf("controldb: record verification of backup %s: %w", backupID, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("controldb: record verification of backup %s: %w", backupID, err)
	}
	return names, nil
}
