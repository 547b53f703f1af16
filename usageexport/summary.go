package usageexport

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// MonthSummary is one month of a site's recorded usage, per instance: what
// `outpost usage show` prints. It is read from the ledger as it stands (the
// controller samples closed hours as they pass), so it agrees with an
// export of the same month up to RecordedUntil.
type MonthSummary struct {
	Month string `json:"month"`
	// RecordedUntil is the end of the latest record in the month (absent
	// when there is none).
	RecordedUntil *time.Time        `json:"recordedUntil,omitempty"`
	Instances     []InstanceSummary `json:"instances"`
	Total         Total             `json:"total"`
}

// InstanceSummary is one instance's usage in a month.
type InstanceSummary struct {
	Instance
	Records           int64  `json:"records"`
	MilliVCoreSeconds int64  `json:"milliVCoreSeconds"`
	VCoreHours        string `json:"vCoreHours"`
	// MilliVCores is the CPU limit of the instance's latest record.
	MilliVCores int64 `json:"milliVCores"`
}

// SummarizeMonth sums the ledger's records that start in month ("YYYY-MM")
// per instance, ordered by namespace and name. Instances with no record in
// the month are left out.
func SummarizeMonth(ctx context.Context, pool *pgxpool.Pool, month string) (*MonthSummary, error) {
	start, end, err := ParseMonth(month)
	if err != nil {
		return nil, err
	}
	rows, err := pool.Query(ctx, `SELECT i.uid, i.kind, i.namespace, i.name, i.created_at, i.deleted_at,
			r.records, r.mvcs, r.until, r.milli_vcores
		FROM (SELECT uid, count(*) AS records, sum(milli_vcore_seconds)::bigint AS mvcs, max(end_at) AS until,
				(array_agg(milli_vcores ORDER BY start_at DESC))[1] AS milli_vcores
			FROM usage_records WHERE start_at >= $1 AND start_at < $2 GROUP BY uid) r
		JOIN usage_instances i USING (uid)
		ORDER BY i.namespace, i.name, i.uid`, start, end)
	if err != nil {
		return nil, fmt.Errorf("usage of %s: %w", month, err)
	}
	s := &MonthSummary{Month: month, Instances: []InstanceSummary{}}
	var row InstanceSummary
	var until time.Time
	_, err = pgx.ForEachRow(rows, []any{&row.UID, &row.Kind, &row.Namespace, &row.Name, &row.CreatedAt, &row.DeletedAt,
		&row.Records, &row.MilliVCoreSeconds, &until, &row.MilliVCores}, func() error {
		r := row
		r.CreatedAt = r.CreatedAt.UTC()
		if r.DeletedAt != nil {
			d := r.DeletedAt.UTC()
			r.DeletedAt = &d
		}
		r.VCoreHours = VCoreHours(r.MilliVCoreSeconds)
		s.Instances = append(s.Instances, r)
		s.Total.Records += r.Records
		s.Total.MilliVCoreSeconds += r.MilliVCoreSeconds
		if u := until.UTC(); s.RecordedUntil == nil || u.After(*s.RecordedUntil) {
			s.RecordedUntil = &u
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("usage of %s: %w", month, err)
	}
	s.Total.VCoreHours = VCoreHours(s.Total.MilliVCoreSeconds)
	return s, nil
}
