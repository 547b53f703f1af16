package usageexport

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Ledger records the timeline of every metered instance in controldb. The
// reconciler calls it; the Sampler reads what it wrote.
type Ledger struct {
	Pool  *pgxpool.Pool
	Clock Clock
}

// NewLedger returns a ledger on controldb that reads time from clock (the
// wall clock when nil).
func NewLedger(pool *pgxpool.Pool, clock Clock) *Ledger {
	if clock == nil {
		clock = SystemClock{}
	}
	return &Ledger{Pool: pool, Clock: clock}
}

// DeletedAsRequested records that the instance with uid is gone since
// its deletion was requested, or now if that is earlier: a controller that
// was down when the deletion was asked for does not bill the time it was
// down.
func (l *Ledger) DeletedAsRequested(ctx context.Context, uid string, requested time.Time) error {
	at := second(l.Clock.Now())
	if requested.Before(at) {
		at = second(requested)
	}
	return l.deleted(ctx, uid, func(time.Time) time.Time { return at })
}

// DeletedWhileAway records that the instance with uid went while nothing
// was watching (its manifest was deleted while `outpost up` was stopped):
// when is not known, so it is closed at the last time it was seen.
func (l *Ledger) DeletedWhileAway(ctx context.Context, uid string) error {
	return l.deleted(ctx, uid, func(lastKnown time.Time) time.Time { return lastKnown })
}

// Observe records that inst has shape now. A new instance opens its first
// interval; a changed shape closes the open interval and opens another.
func (l *Ledger) Observe(ctx context.Context, inst Instance, shape Shape) error {
	if inst.UID == "" {
		return fmt.Errorf("usage ledger: %s %s/%s has no uid", inst.Kind, inst.Namespace, inst.Name)
	}
	if shape.Labels == nil {
		shape.Labels = map[string]string{}
	}
	now := second(l.Clock.Now())
	err := pgx.BeginFunc(ctx, l.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO usage_instances (uid, kind, namespace, name, created_at, last_seen_at)
			VALUES ($1, $2, $3, $4, $5, $5)
			ON CONFLICT (uid) DO UPDATE SET last_seen_at = EXCLUDED.last_seen_at
				WHERE usage_instances.last_seen_at IS NULL OR usage_instances.last_seen_at < EXCLUDED.last_seen_at`,
			inst.UID, inst.Kind, inst.Namespace, inst.Name, now); err != nil {
			return err
		}
		var deleted *time.Time
		if err := tx.QueryRow(ctx, `SELECT deleted_at FROM usage_instances WHERE uid = $1 FOR UPDATE`, inst.UID).Scan(&deleted); err != nil {
			return err
		}
		if deleted != nil {
			// A uid is never reused; a late observation of a deleted
			// instance must not bring it back to life.
			return nil
		}
		open, found, err := openInterval(ctx, tx, inst.UID)
		if err != nil {
			return err
		}
		if !found {
			return insertInterval(ctx, tx, inst.UID, now, shape)
		}
		if open.shape.equal(shape) {
			return nil
		}
		cut := cutTime(now, open)
		if cut.Equal(open.start) {
			// Changed within the second it started: nothing has been
			// billed at the old shape, so the interval takes the new one.
			_, err := tx.Exec(ctx, `UPDATE usage_intervals SET milli_vcores = $3, memory_bytes = $4, storage_bytes = $5, labels = $6
				WHERE uid = $1 AND start_at = $2`, inst.UID, open.start, shape.MilliVCores, shape.MemoryBytes, shape.StorageBytes, shape.Labels)
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE usage_intervals SET end_at = $3 WHERE uid = $1 AND start_at = $2`, inst.UID, open.start, cut); err != nil {
			return err
		}
		return insertInterval(ctx, tx, inst.UID, cut, shape)
	})
	if err != nil {
		return fmt.Errorf("usage ledger: record %s %s/%s: %w", inst.Kind, inst.Namespace, inst.Name, err)
	}
	return nil
}

// Deleted closes the open interval of the instance with uid now and marks
// the instance deleted. Deleting twice, or an instance never observed,
// does nothing.
func (l *Ledger) Deleted(ctx context.Context, uid string) error {
	now := second(l.Clock.Now())
	return l.deleted(ctx, uid, func(time.Time) time.Time { return now })
}

// deleted closes the open interval of uid at when(last known) (never before
// what is already sampled) and marks the instance deleted.
func (l *Ledger) deleted(ctx context.Context, uid string, when func(lastSeen time.Time) time.Time) error {
	err := pgx.BeginFunc(ctx, l.Pool, func(tx pgx.Tx) error {
		open, found, err := openInterval(ctx, tx, uid)
		if err != nil || !found {
			return err
		}
		// The last time it is known to have been declared: last seen, or
		// its deletion request if that came first (LEAST skips NULLs).
		var lastKnown time.Time
		if err := tx.QueryRow(ctx, `SELECT LEAST(COALESCE(last_seen_at, created_at), deletion_requested_at)
			FROM usage_instances WHERE uid = $1`, uid).Scan(&lastKnown); err != nil {
			return err
		}
		cut := cutTime(second(when(lastKnown)), open)
		if _, err := tx.Exec(ctx, `UPDATE usage_intervals SET end_at = $3 WHERE uid = $1 AND start_at = $2`, uid, open.start, cut); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE usage_instances SET deleted_at = $2 WHERE uid = $1 AND deleted_at IS NULL`, uid, cut)
		return err
	})
	if err != nil {
		return fmt.Errorf("usage ledger: record deletion of %s: %w", uid, err)
	}
	return nil
}

type interval struct {
	start, sampledUntil time.Time
	shape               Shape
}

func openInterval(ctx context.Context, tx pgx.Tx, uid string) (interval, bool, error) {
	var iv interval
	err := tx.QueryRow(ctx, `SELECT start_at, sampled_until, milli_vcores, memory_bytes, storage_bytes, labels
		FROM usage_intervals WHERE uid = $1 AND end_at IS NULL FOR UPDATE`, uid).
		Scan(&iv.start, &iv.sampledUntil, &iv.shape.MilliVCores, &iv.shape.MemoryBytes, &iv.shape.StorageBytes, &iv.shape.Labels)
	if errors.Is(err, pgx.ErrNoRows) {
		return iv, false, nil
	}
	return iv, err == nil, err
}

func insertInterval(ctx context.Context, tx pgx.Tx, uid string, start time.Time, shape Shape) error {
	_, err := tx.Exec(ctx, `INSERT INTO usage_intervals (uid, start_at, milli_vcores, memory_bytes, storage_bytes, labels, sampled_until)
		VALUES ($1, $2, $3, $4, $5, $6, $2)`, uid, start, shape.MilliVCores, shape.MemoryBytes, shape.StorageBytes, shape.Labels)
	return err
}

// cutTime is when an interval ends: now, but never before what has already
// been turned into records, so a clock that stepped back cannot contradict
// a record already written.
func cutTime(now time.Time, open interval) time.Time {
	t := now
	if t.Before(open.start) {
		t = open.start
	}
	if t.Before(open.sampledUntil) {
		t = open.sampledUntil
	}
	return t
}
