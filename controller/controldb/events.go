package controldb

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// eventsKept is how many events are kept per object; older ones are dropped
// as new ones arrive.
const eventsKept = 50

// Event is something that happened to an object, for `outpost describe`.
type Event struct {
	At      time.Time
	Type    string // Normal or Warning
	Reason  string
	Message string
}

// RecordEvent stores an event of an object.
func (db *DB) RecordEvent(ctx context.Context, kind, namespace, name string, e Event) error {
	return pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO events (kind, namespace, name, type, reason, message) VALUES ($1, $2, $3, $4, $5, $6)`,
			kind, namespace, name, e.Type, e.Reason, e.Message); err != nil {
			return fmt.Errorf("controldb: record event: %w", err)
		}
		_, err := tx.Exec(ctx, `DELETE FROM events WHERE kind = $1 AND namespace = $2 AND name = $3 AND id NOT IN (
			SELECT id FROM events WHERE kind = $1 AND namespace = $2 AND name = $3 ORDER BY id DESC LIMIT $4)`,
			kind, namespace, name, eventsKept)
		if err != nil {
			return fmt.Errorf("controldb: trim events: %w", err)
		}
		return nil
	})
}

// Events returns an object's events, oldest first.
func (db *DB) Events(ctx context.Context, kind, namespace, name string) ([]Event, error) {
	rows, err := db.Pool.Query(ctx, `SELECT at, type, reason, message FROM events
		WHERE kind = $1 AND namespace = $2 AND name = $3 ORDER BY id`, kind, namespace, name)
	if err != nil {
		return nil, fmt.Errorf("controldb: events: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Event, error) {
		var e Event
		err := row.Scan(&e.At, &e.Type, &e.Reason, &e.Message)
		return e, err
	})
}
