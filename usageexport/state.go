package usageexport

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Keys of usage_state: when usage last left the site, by each route.
const (
	StateLastExport = "last_export"
	StateLastUpload = "last_upload"
)

// SetState records a time under key.
func SetState(ctx context.Context, pool *pgxpool.Pool, key string, t time.Time) error {
	_, err := pool.Exec(ctx, `INSERT INTO usage_state (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = GREATEST(usage_state.value, EXCLUDED.value)`, key, t)
	if err != nil {
		return fmt.Errorf("usage state %s: %w", key, err)
	}
	return nil
}

// State returns the time under key; ok is false when none was recorded.
func State(ctx context.Context, pool *pgxpool.Pool, key string) (t time.Time, ok bool, err error) {
	err = pool.QueryRow(ctx, `SELECT value FROM usage_state WHERE key = $1`, key).Scan(&t)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, false, nil
	}
	if err != nil {
		return t, false, fmt.Errorf("usage state %s: %w", key, err)
	}
	return t, true, nil
}
