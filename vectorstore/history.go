package vectorstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// prune removes history versions older than the retention that a later
// version, itself older than the retention, supersedes. What remains
// answers every as-of lookup inside the retention window exactly: the
// version current at the window's start is kept.
func (s *Store) prune(ctx context.Context, db execer) (int64, error) {
	// Only superseded versions can go, and those are all in the past table.
	tag, err := db.Exec(ctx, fmt.Sprintf(`DELETE FROM %[1]s h
WHERE h.event_time < $1 AND EXISTS (
	SELECT 1 FROM %[2]s n WHERE n.key = h.key AND n.event_time > h.event_time AND n.event_time <= $1)`, s.past, s.history),
		time.Now().Add(-max(s.spec.Retention, 0)))
	if err != nil {
		return 0, fmt.Errorf("prune history of %q: %w", s.spec.Name, err)
	}
	return tag.RowsAffected(), nil
}

// checkAsOf refuses an as-of time before the retention window, where
// history no longer holds every version and an answer could be wrong.
func (s *Store) checkAsOf(t time.Time) error {
	if cutoff := time.Now().Add(-max(s.spec.Retention, 0)); t.Before(cutoff) {
		return fmt.Errorf("as-of %s is before the history retention window of feature store %q (%s, from %s): versions from then may be pruned",
			t.Format(time.RFC3339), s.spec.Name, s.spec.Retention, cutoff.Format(time.RFC3339))
	}
	return nil
}

// Lookup returns the values of keys as they were at asOf (from history),
// or the latest values when asOf is zero. Keys without a version then are
// absent from the result.
func (s *Store) Lookup(ctx context.Context, keys []string, asOf time.Time) (map[string]Result, error) {
	var q string
	args := []any{keys}
	if asOf.IsZero() {
		q = fmt.Sprintf("SELECT key, NULL::float8, event_time, updated_at%s FROM %s WHERE key = ANY($1)", s.selectFeatures(""), s.table)
	} else {
		if err := s.checkAsOf(asOf); err != nil {
			return nil, err
		}
		q = fmt.Sprintf(`SELECT DISTINCT ON (key) key, NULL::float8, event_time, updated_at%s FROM %s
WHERE key = ANY($1) AND event_time <= $2 ORDER BY key, event_time DESC`, s.selectFeatures(""), s.history)
		args = append(args, asOf)
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("lookup in %q: %w", s.spec.Name, err)
	}
	res, err := s.scanResults(rows)
	if err != nil {
		return nil, err
	}
	out := make(map[string]Result, len(res))
	for _, r := range res {
		out[r.Key] = r
	}
	return out, nil
}

// selectFeatures lists the feature columns for a SELECT, with a table
// alias prefix when one is given.
func (s *Store) selectFeatures(alias string) string {
	out := ""
	for _, f := range s.spec.Features {
		col := ident(f.Name)
		if alias != "" {
			col = alias + "." + col
		}
		out += ", " + col
	}
	return out
}

// scanResults reads rows of key, distance, event_time, updated_at and the
// features in spec order.
func (s *Store) scanResults(rows pgx.Rows) ([]Result, error) {
	defer rows.Close()
	var out []Result
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		r := Result{Features: make(map[string]any, len(s.spec.Features))}
		r.Key, _ = vals[0].(string)
		if d, ok := vals[1].(float64); ok {
			r.Distance = d
		}
		r.EventTime, _ = vals[2].(time.Time)
		r.UpdatedAt, _ = vals[3].(time.Time)
		for i, f := range s.spec.Features {
			r.Features[f.Name] = vals[4+i]
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read results of %q: %w", s.spec.Name, err)
	}
	return out, nil
}
