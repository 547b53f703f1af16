package usageexport

import (
	"context"
	"encoding/hex"
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
	err = pool.QueryRow(ctx, `SELECT payload_sha256 FROM usage_exports WHERE month < $1
		ORDER BY month DESC, exported_at DESC LIMIT 1`, opts.Month).Scan(&p.PreviousExportSHA256)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("export %s: previous export: %w", opts.Month, err)
	}

	// Records go straight from the query into the signed buffer, summed on
	// the way.
	var enc recordEncoder
	if err := enc.begin([]byte(signingContext), p, expectedRecords(p.Instances, start, covered)); err != nil {
		return nil, fmt.Errorf("export %s: %w", opts.Month, err)
	}
	var sums totaller
	err = periodRecords(ctx, pool, siteID, start, covered, func(r *Record) error {
		sums.add(r)
		return enc.add(r)
	})
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", opts.Month, err)
	}
	p.Totals, p.Total = sums.result()
	msg, err := enc.finish(p)
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", opts.Month, err)
	}
	file, sum, err := sealMessage(msg, opts.Key)
	if err != nil {
		return nil, err
	}
	payloadSHA256 := hex.EncodeToString(sum[:])
	if opts.Gzip {
		if file, err = Gzip(file); err != nil {
			return nil, err
		}
	}
	_, err = pool.Exec(ctx, `INSERT INTO usage_exports (payload_sha256, month, partial, exported_at, records, milli_vcore_seconds)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (payload_sha256) DO NOTHING`,
		payloadSHA256, opts.Month, p.Period.Partial, now, p.Total.Records, p.Total.MilliVCoreSeconds)
	if err != nil {
		return nil, fmt.Errorf("export %s: history: %w", opts.Month, err)
	}
	if err := SetState(ctx, pool, StateLastExport, now); err != nil {
		return nil, err
	}
	return &ExportResult{File: file, PayloadSHA256: payloadSHA256, Period: *p.Period, Total: p.Total, Instances: len(p.Instances)}, nil
}

// periodInstances lists every instance alive at some point in [start, to),
// deleted ones included.
func periodInstances(ctx context.Context, pool *pgxpool.Pool, start, to time.Time) ([]Instance, error) {
	rows, err := pool.Query(ctx, `SELECT uid, kind, namespace, name, created_at, deleted_at FROM usage_instances
		WHERE created_at < $2 AND (deleted_at IS NULL OR deleted_at > $1) ORDER BY uid`, start, to)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanInstance)
}

// scanInstance reads a row of uid, kind, namespace, name, created_at,
// deleted_at, with the times in UTC.
func scanInstance(r pgx.CollectableRow) (Instance, error) {
	var i Instance
	err := r.Scan(&i.UID, &i.Kind, &i.Namespace, &i.Name, &i.CreatedAt, &i.DeletedAt)
	i.CreatedAt = i.CreatedAt.UTC()
	if i.DeletedAt != nil {
		d := i.DeletedAt.UTC()
		i.DeletedAt = &d
	}
	return i, err
}

// periodRecords calls f with each record that starts in [start, to),
// ordered by instance and time, so the same month always lists them alike.
// f must not keep r.
func periodRecords(ctx context.Context, pool *pgxpool.Pool, siteID string, start, to time.Time, f func(r *Record) error) error {
	rows, err := pool.Query(ctx, `SELECT id, uid, start_at, end_at, milli_vcores, memory_bytes, storage_bytes, labels::text, milli_vcore_seconds
		FROM usage_records WHERE site_id = $1 AND start_at >= $2 AND start_at < $3 ORDER BY uid, start_at, id`, siteID, start, to)
	if err != nil {
		return err
	}
	defer rows.Close()
	// Records of one interval share their labels; decode each distinct
	// set once.
	labelSets := map[string]map[string]string{}
	var labels []byte
	var r Record
	for rows.Next() {
		if err := rows.Scan(&r.ID, &r.UID, &r.Start, &r.End, &r.MilliVCores, &r.MemoryBytes, &r.StorageBytes, &labels, &r.MilliVCoreSeconds); err != nil {
			return err
		}
		set, ok := labelSets[string(labels)]
		if !ok {
			if err := json.Unmarshal(labels, &set); err != nil {
				return err
			}
			labelSets[string(labels)] = set
		}
		r.Start, r.End, r.Labels = r.Start.UTC(), r.End.UTC(), set
		r.VCoreHours = VCoreHours(r.MilliVCoreSeconds)
		if err := f(&r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// expectedRecords is about how many records the instances have in [start,
// to): one per hour alive, more where a change cut a slice.
func expectedRecords(insts []Instance, start, to time.Time) int {
	n := 0
	for _, i := range insts {
		from, until := i.CreatedAt, to
		if from.Before(start) {
			from = start
		}
		if i.DeletedAt != nil && i.DeletedAt.Before(until) {
			until = *i.DeletedAt
		}
		if until.After(from) {
			n += int(until.Sub(from)/time.Hour) + 1
		}
	}
	return n
}

// totals sums records per instance, in order of first appearance (records
// are ordered by instance).
func totals(recs []Record) ([]InstanceTotal, Total) {
	var s totaller
	for i := range recs {
		s.add(&recs[i])
	}
	return s.result()
}

// totaller sums records per instance, in order of first appearance
// (records come ordered by instance).
type totaller struct {
	per []InstanceTotal
	all Total
}

func (s *totaller) add(r *Record) {
	if len(s.per) == 0 || s.per[len(s.per)-1].UID != r.UID {
		s.per = append(s.per, InstanceTotal{UID: r.UID})
	}
	t := &s.per[len(s.per)-1]
	t.Records++
	t.MilliVCoreSeconds += r.MilliVCoreSeconds
	s.all.Records++
	s.all.MilliVCoreSeconds += r.MilliVCoreSeconds
}

func (s *totaller) result() ([]InstanceTotal, Total) {
	out := s.per
	if out == nil {
		out = []InstanceTotal{}
	}
	for i := range out {
		out[i].VCoreHours = VCoreHours(out[i].MilliVCoreSeconds)
	}
	s.all.VCoreHours = VCoreHours(s.all.MilliVCoreSeconds)
	return out, s.all
}
