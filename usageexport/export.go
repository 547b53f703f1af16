package usageexport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ExportOptions configure Export.
type ExportOptions struct {
	// Month is "YYYY-MM".
	Month string
	// Site's name and labels; its id comes from Key.
	SiteName   string
	SiteLabels map[string]string
	// ControllerVersion is written into the file.
	ControllerVersion string
	Key               SigningKey
	// Clock decides whether the month is over (the wall clock when nil).
	Clock Clock
	// Sampler, when set, catches the ledger up before exporting.
	Sampler *Sampler
	// Gzip compresses the file.
	Gzip bool
}

// ExportResult describes a written export.
type ExportResult struct {
	File          []byte
	PayloadSHA256 string
	Period        Period
	Total         Total
	Instances     int
}

// Export builds and signs the usage file of one month from the ledger and
// remembers it in the export history. Exporting the same month again gives
// the same instances and records; a month still running is marked partial
// and covers the hours closed so far.
func Export(ctx context.Context, pool *pgxpool.Pool, opts ExportOptions) (*ExportResult, error) {
	start, end, err := ParseMonth(opts.Month)
	if err != nil {
		return nil, err
	}
	clock := opts.Clock
	if clock == nil {
		clock = SystemClock{}
	}
	now := second(clock.Now())
	if !now.After(start) {
		return nil, fmt.Errorf("month %s has not begun yet", opts.Month)
	}
	covered := now.Truncate(time.Hour)
	if covered.After(end) {
		covered = end
	}
	if opts.Sampler != nil {
		if _, err := opts.Sampler.Sample(ctx); err != nil {
			return nil, err
		}
	}
	var behind int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM usage_intervals
		WHERE start_at < $1 AND sampled_until < LEAST(COALESCE(end_at, $1), $1)`, covered).Scan(&behind); err != nil {
		return nil, fmt.Errorf("export %s: %w", opts.Month, err)
	}
	if behind > 0 {
		return nil, fmt.Errorf("export %s: usage of %d instance intervals is not sampled up to %s yet; is the controller running?", opts.Month, behind, covered.Format(time.RFC3339))
	}

	siteID := SiteID(opts.Key.Public())
	labels := opts.SiteLabels
	if labels == nil {
		labels = map[string]string{}
	}
	p := &Payload{
		FormatVersion:     FormatVersion,
		Kind:              KindMonthlyExport,
		Site:              SiteInfo{ID: siteID, Name: opts.SiteName, Labels: labels},
		ControllerVersion: opts.ControllerVersion,
		GeneratedAt:       now,
		Period:            &Period{Month: opts.Month, Start: start, End: end, CoveredUntil: covered, Partial: covered.Before(end)},
	}
	if p.Instances, err = periodInstances(ctx, pool, start, covered); err != nil {
		return nil, fmt.Errorf("export %s: %w", opts.Month, err)
	}
	if p.Records, err = periodRecords(ctx, pool, siteID, start, covered); err != nil {
		return nil, fmt.Errorf("export %s: %w", opts.Month, err)
	}
	if p.Records == nil {
		p.Records = []Record{}
	}
	p.Totals, p.Total = totals(p.Records)
	err = pool.QueryRow(ctx, `SELECT payload_sha256 FROM usage_exports WHERE month < $1
		ORDER BY month DESC, exported_at DESC LIMIT 1`, opts.Month).Scan(&p.PreviousExportSHA256)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("export %s: previous export: %w", opts.Month, err)
	}

	payload, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", opts.Month, err)
	}
	file, err := Seal(payload, opts.Key)
	if err != nil {
		return nil, err
	}
	o, err := OpenSigned(file)
	if err != nil {
		return nil, fmt.Errorf("export %s: the file just signed does not verify: %w", opts.Month, err)
	}
	if opts.Gzip {
		if file, err = Gzip(file); err != nil {
			return nil, err
		}
	}
	_, err = pool.Exec(ctx, `INSERT INTO usage_exports (payload_sha256, month, partial, exported_at, records, milli_vcore_seconds)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (payload_sha256) DO NOTHING`,
		o.PayloadSHA256, opts.Month, p.Period.Partial, now, p.Total.Records, p.Total.MilliVCoreSeconds)
	if err != nil {
		return nil, fmt.Errorf("export %s: history: %w", opts.Month, err)
	}
	if err := SetState(ctx, pool, StateLastExport, now); err != nil {
		return nil, err
	}
	return &ExportResult{File: file, PayloadSHA256: o.PayloadSHA256, Period: *p.Period, Total: p.Total, Instances: len(p.Instances)}, nil
}

// periodInstances lists every instance alive at some point in [start, to),
// deleted ones included.
func periodInstances(ctx context.Context, pool *pgxpool.Pool, start, to time.Time) ([]Instance, error) {
	rows, err := pool.Query(ctx, `SELECT uid, kind, namespace, name, created_at, deleted_at FROM usage_instances
		WHERE created_at < $2 AND (deleted_at IS NULL OR deleted_at > $1) ORDER BY uid`, start, to)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Instance, error) {
		var i Instance
		err := r.Scan(&i.UID, &i.Kind, &i.Namespace, &i.Name, &i.CreatedAt, &i.DeletedAt)
		i.CreatedAt = i.CreatedAt.UTC()
		if i.DeletedAt != nil {
			d := i.DeletedAt.UTC()
			i.DeletedAt = &d
		}
		return i, err
	})
}

// periodRecords returns the records that start in [start, to), ordered by
// instance and time, so the same month always lists them alike.
func periodRecords(ctx context.Context, pool *pgxpool.Pool, siteID string, start, to time.Time) ([]Record, error) {
	rows, err := pool.Query(ctx, `SELECT id, uid, start_at, end_at, milli_vcores, memory_bytes, storage_bytes, labels::text, milli_vcore_seconds
		FROM usage_records WHERE site_id = $1 AND start_at >= $2 AND start_at < $3 ORDER BY uid, start_at, id`, siteID, start, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Record
	// Records of one interval share their labels; decode each distinct
	// set once.
	labelSets := map[string]map[string]string{}
	var labels string
	for rows.Next() {
		var r Record
		if err := rows.Scan(&r.ID, &r.UID, &r.Start, &r.End, &r.MilliVCores, &r.MemoryBytes, &r.StorageBytes, &labels, &r.MilliVCoreSeconds); err != nil {
			return nil, err
		}
		set, ok := labelSets[labels]
		if !ok {
			if err := json.Unmarshal([]byte(labels), &set); err != nil {
				return nil, err
			}
			labelSets[labels] = set
		}
		r.Start, r.End, r.Labels = r.Start.UTC(), r.End.UTC(), set
		r.VCoreHours = VCoreHours(r.MilliVCoreSeconds)
		out = append(out, r)
	}
	return out, rows.Err()
}

// totals sums records per instance, in order of first appearance (records
// are ordered by instance).
func totals(recs []Record) ([]InstanceTotal, Total) {
	out := []InstanceTotal{}
	var all Total
	for _, r := range recs {
		if len(out) == 0 || out[len(out)-1].UID != r.UID {
			out = append(out, InstanceTotal{UID: r.UID})
		}
		t := &out[len(out)-1]
		t.Records++
		t.MilliVCoreSeconds += r.MilliVCoreSeconds
		all.Records++
		all.MilliVCoreSeconds += r.MilliVCoreSeconds
	}
	for i := range out {
		out[i].VCoreHours = VCoreHours(out[i].MilliVCoreSeconds)
	}
	all.VCoreHours = VCoreHours(all.MilliVCoreSeconds)
	return out, all
}
