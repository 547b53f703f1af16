package usageexport

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Declared is an instance the source (the Kubernetes API, the manifests
// directory) declares at the moment it was listed.
type Declared struct {
	UID string
	// DeletionRequested is its deletionTimestamp, if its deletion has been
	// asked for (Kubernetes waits for finalizers).
	DeletionRequested *time.Time
}

// Sweep is the orphan sweep. listedAt is the ledger clock's time just
// before the source was listed, declared what the listing held. Every
// declared instance is marked seen at listedAt (and its deletion request
// kept as a tombstone). Every instance the ledger has open that the listing
// does not hold, and that nothing has observed since listedAt, is closed:
// at its deletion request when one was seen, otherwise at the last time it
// was seen. That bills an instance deleted behind the controller's back (a
// finalizer removed by hand, a deletion while the controller was down) up
// to when it went, not forever. It returns the uids it closed.
func (l *Ledger) Sweep(ctx context.Context, listedAt time.Time, declared []Declared) ([]string, error) {
	listedAt = second(listedAt)
	uids := make([]string, len(declared))
	for i, d := range declared {
		uids[i] = d.UID
	}
	batch := &pgx.Batch{}
	batch.Queue(`UPDATE usage_instances SET last_seen_at = $2
		WHERE uid = ANY($1) AND deleted_at IS NULL AND (last_seen_at IS NULL OR last_seen_at < $2)`, uids, listedAt)
	for _, d := range declared {
		if d.DeletionRequested != nil {
			batch.Queue(`UPDATE usage_instances SET deletion_requested_at = $2 WHERE uid = $1 AND deletion_requested_at IS NULL`,
				d.UID, second(*d.DeletionRequested))
		}
	}
	if err := l.Pool.SendBatch(ctx, batch).Close(); err != nil {
		return nil, fmt.Errorf("usage orphan sweep: %w", err)
	}
	// An instance observed after the listing began (last_seen_at >=
	// listedAt) may be newer than the listing: it is not an orphan.
	rows, err := l.Pool.Query(ctx, `SELECT uid FROM usage_instances
		WHERE deleted_at IS NULL AND NOT (uid = ANY($1)) AND COALESCE(last_seen_at, created_at) < $2
		ORDER BY uid`, uids, listedAt)
	if err != nil {
		return nil, fmt.Errorf("usage orphan sweep: %w", err)
	}
	orphans, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("usage orphan sweep: %w", err)
	}
	for _, uid := range orphans {
		err := l.deleted(ctx, uid, func(lastKnown time.Time) time.Time { return lastKnown })
		if err != nil {
			return nil, err
		}
	}
	return orphans, nil
}
