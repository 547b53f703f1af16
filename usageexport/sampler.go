package usageexport

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// maxHoursPerTransaction bounds one sampling transaction, so catching up
// on months of downtime is many short transactions, each of which either
// happened entirely or not at all.
const maxHoursPerTransaction = 744

// Sampler turns the ledger's timeline into usage records for every clock
// hour that has ended. It may run any number of times, crash anywhere, or
// run in two processes at once: the records are the same.
type Sampler struct {
	Pool  *pgxpool.Pool
	Clock Clock
	// SiteID goes into every record id.
	SiteID string
	// NotAfter, when set, is the latest time a record may end, whatever
	// the clock says: the newest trusted time plus the allowed skew (see
	// ClockCheck). Hours after it wait for a clock that agrees.
	NotAfter time.Time
	Log      *slog.Logger
}

// Sample writes the records of every closed hour not yet recorded and
// returns how many records are new.
func (s *Sampler) Sample(ctx context.Context) (int, error) {
	horizon := second(s.Clock.Now()).Truncate(time.Hour)
	if !s.NotAfter.IsZero() && s.NotAfter.Before(horizon) {
		horizon = second(s.NotAfter).Truncate(time.Hour)
	}
	rows, err := s.Pool.Query(ctx, `SELECT v.uid, v.start_at FROM usage_intervals v
		WHERE v.sampled_until < $1 AND (v.end_at IS NULL OR v.sampled_until < v.end_at)
		ORDER BY v.start_at, v.uid`, horizon)
	if err != nil {
		return 0, fmt.Errorf("usage sampler: %w", err)
	}
	type key struct {
		uid   string
		start time.Time
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (key, error) {
		var k key
		return k, r.Scan(&k.uid, &k.start)
	})
	if err != nil {
		return 0, fmt.Errorf("usage sampler: %w", err)
	}
	written := 0
	for _, k := range keys {
		for {
			n, more, err := s.sampleInterval(ctx, k.uid, k.start, horizon)
			written += n
			if err != nil {
				return written, fmt.Errorf("usage sampler: instance %s: %w", k.uid, err)
			}
			if !more {
				break
			}
		}
	}
	return written, nil
}

// sampleInterval writes the records of one interval from where it was last
// sampled, up to horizon or at most maxHoursPerTransaction hours, and moves
// sampled_until in the same transaction.
func (s *Sampler) sampleInterval(ctx context.Context, uid string, start, horizon time.Time) (written int, more bool, err error) {
	err = pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		var inst Instance
		var end *time.Time
		var shape Shape
		var from time.Time
		// FOR UPDATE: a second sampler waits here and then finds the work
		// done, instead of writing the same hours again.
		err := tx.QueryRow(ctx, `SELECT i.uid, i.kind, i.namespace, i.name, i.created_at,
				v.end_at, v.milli_vcores, v.memory_bytes, v.storage_bytes, v.labels, v.sampled_until
			FROM usage_intervals v JOIN usage_instances i USING (uid)
			WHERE v.uid = $1 AND v.start_at = $2 FOR UPDATE OF v`, uid, start).
			Scan(&inst.UID, &inst.Kind, &inst.Namespace, &inst.Name, &inst.CreatedAt,
				&end, &shape.MilliVCores, &shape.MemoryBytes, &shape.StorageBytes, &shape.Labels, &from)
		if err != nil {
			return err
		}
		to := horizon
		if end != nil && end.Before(to) {
			to = *end
		}
		if limit := from.Truncate(time.Hour).Add(maxHoursPerTransaction * time.Hour); limit.Before(to) {
			to, more = limit, true
		}
		if !from.Before(to) {
			more = false
			return nil
		}
		recs := Slices(s.SiteID, inst, shape, from, to)
		n, err := s.insert(ctx, tx, inst, recs)
		if err != nil {
			return err
		}
		written = n
		_, err = tx.Exec(ctx, `UPDATE usage_intervals SET sampled_until = $3 WHERE uid = $1 AND start_at = $2`, uid, start, to)
		return err
	})
	if err != nil {
		written = 0
	}
	return written, more, err
}

// Slices cuts [from, to) at every clock hour and returns one record per
// piece. It is the whole metering rule, and a pure function.
func Slices(siteID string, inst Instance, shape Shape, from, to time.Time) []Record {
	var out []Record
	for t := from; t.Before(to); {
		next := t.Truncate(time.Hour).Add(time.Hour)
		if next.After(to) {
			next = to
		}
		out = append(out, newRecord(siteID, inst, t, next, shape))
		t = next
	}
	return out
}

// insert stores records, skipping those already stored. A new record is
// in the hub's backlog (acked_at NULL) from the start, whatever the mode:
// switching to direct mode later sends it.
func (s *Sampler) insert(ctx context.Context, tx pgx.Tx, inst Instance, recs []Record) (int, error) {
	if len(recs) == 0 {
		return 0, nil
	}
	ids := make([]string, len(recs))
	starts := make([]time.Time, len(recs))
	ends := make([]time.Time, len(recs))
	mvcs := make([]int64, len(recs))
	labels, err := json.Marshal(recs[0].Labels)
	if err != nil {
		return 0, err
	}
	for i, r := range recs {
		ids[i], starts[i], ends[i], mvcs[i] = r.ID, r.Start, r.End, r.MilliVCoreSeconds
	}
	sh := recs[0].Shape
	tag, err := tx.Exec(ctx, `INSERT INTO usage_records (id, site_id, uid, kind, namespace, name, start_at, end_at,
			milli_vcores, memory_bytes, storage_bytes, labels, milli_vcore_seconds)
		SELECT r.id, $1, $2, $3, $4, $5, r.s, r.e, $6, $7, $8, $9::jsonb, r.q
		FROM unnest($10::text[], $11::timestamptz[], $12::timestamptz[], $13::bigint[]) AS r(id, s, e, q)
		ON CONFLICT (id) DO NOTHING`,
		s.SiteID, inst.UID, inst.Kind, inst.Namespace, inst.Name, sh.MilliVCores, sh.MemoryBytes, sh.StorageBytes, string(labels),
		ids, starts, ends, mvcs)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

// Run samples now and then every interval until ctx ends. Errors are
// logged and retried on the next tick: the next sample catches up.
func (s *Sampler) Run(ctx context.Context, interval func() time.Duration) {
	for {
		if n, err := s.Sample(ctx); err != nil && ctx.Err() == nil {
			s.log().Error("usage sampling failed", "err", err)
		} else if n > 0 {
			s.log().Debug("usage sampled", "records", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval()):
		}
	}
}

func (s *Sampler) log() *slog.Logger {
	if s.Log == nil {
		return slog.Default()
	}
	return s.Log
}
