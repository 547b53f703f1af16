package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outpostdata/outpost/usageexport"
)

// Hub receives and serves usage.
type Hub struct {
	Pool *pgxpool.Pool
	// Warning and Overdue are how long a site's data may lag the hub's
	// clock before it is shown as late; zero means 48 hours and 30 days.
	Warning, Overdue time.Duration
	// Skew is how far past the hub's clock a record may end before it is
	// refused as coming from the future; zero means DefaultSkew.
	Skew time.Duration
	// MaxBody bounds an upload, compressed and uncompressed; zero means
	// DefaultMaxBody.
	MaxBody int64
	// PerSite is how many uploads of one site may be in flight at once;
	// zero means DefaultPerSite.
	PerSite int
	Log     *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	inflight inflight
}

// DefaultSkew is how far ahead of the hub's clock a site's clock may be
// before its records are refused.
const DefaultSkew = 10 * time.Minute

func (h *Hub) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Hub) skew() time.Duration {
	if h.Skew > 0 {
		return h.Skew
	}
	return DefaultSkew
}

// BadFileError is a file or batch the hub refuses because of its content;
// the HTTP answer is 400 with its message.
type BadFileError struct{ Reason error }

func (e *BadFileError) Error() string { return e.Reason.Error() }
func (e *BadFileError) Unwrap() error { return e.Reason }

// Ingest verifies data against the site's registered key and stores its
// records, each once. Receiving the same bytes again changes nothing and
// says so in the receipt. The site's freshness moves to the newest time its
// data covers (never back), so an old file, received again or late, leaves
// a late site late.
func (h *Hub) Ingest(ctx context.Context, site Site, data []byte, wantKind string) (*usageexport.Receipt, error) {
	v, err := usageexport.Verify(data, usageexport.VerifyOptions{PublicKey: site.PublicKey})
	if err != nil {
		return nil, &BadFileError{Reason: err}
	}
	p := v.Payload
	if p.Kind != wantKind {
		return nil, &BadFileError{Reason: fmt.Errorf("kind: %q sent to the endpoint for %q", p.Kind, wantKind)}
	}
	now := h.now().UTC()
	if err := notFromTheFuture(p, now, h.skew()); err != nil {
		return nil, &BadFileError{Reason: err}
	}
	rc := &usageexport.Receipt{PayloadSHA256: v.PayloadSHA256, Site: site.Name, Kind: p.Kind, Records: int64(len(p.Records)), ServerTime: &now}
	var month, previous *string
	if p.Period != nil {
		month, previous = &p.Period.Month, &p.PreviousExportSHA256
	}
	err = pgx.BeginFunc(ctx, h.Pool, func(tx pgx.Tx) error {
		if until := dataUntil(p); until != nil {
			if _, err := tx.Exec(ctx, `UPDATE hub_sites SET data_until = GREATEST(data_until, $2) WHERE name = $1`, site.Name, *until); err != nil {
				return err
			}
		}
		if p.Period == nil && len(p.Records) == 0 {
			// A heartbeat: a site asking for the hub's time. It carries
			// nothing to keep, and a receipt for each would pile up.
			return nil
		}
		err := tx.QueryRow(ctx, `SELECT new_records FROM hub_receipts WHERE payload_sha256 = $1`, v.PayloadSHA256).Scan(&rc.NewRecords)
		if err == nil {
			rc.Duplicate, rc.NewRecords = true, 0
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if err := storeInstances(ctx, tx, site.Name, p.Instances); err != nil {
			return fmt.Errorf("instances: %w", err)
		}
		if rc.NewRecords, err = storeRecords(ctx, tx, site.Name, p.Records); err != nil {
			return fmt.Errorf("records: %w", err)
		}
		_, err = tx.Exec(ctx, `INSERT INTO hub_receipts (payload_sha256, site, kind, month, records, new_records, previous_sha256)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`, v.PayloadSHA256, site.Name, p.Kind, month, rc.Records, rc.NewRecords, previous)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store usage from %s: %w", site.Name, err)
	}
	h.log().Info("usage received", "site", site.Name, "kind", p.Kind, "records", rc.Records, "new", rc.NewRecords, "duplicate", rc.Duplicate)
	return rc, nil
}

// dataUntil is how far a payload's data reaches: an export's coverage
// (even a month without records says the site was metering), else the end
// of its newest record; nil for a batch without records.
func dataUntil(p *usageexport.Payload) *time.Time {
	var until *time.Time
	if p.Period != nil {
		until = &p.Period.CoveredUntil
	}
	for i := range p.Records {
		if until == nil || p.Records[i].End.After(*until) {
			until = &p.Records[i].End
		}
	}
	return until
}

// notFromTheFuture refuses a payload with records that end after the
// hub's clock plus skew: hours that have not happened, from a site whose
// clock is ahead. It names the first few.
func notFromTheFuture(p *usageexport.Payload, now time.Time, skew time.Duration) error {
	limit := now.Add(skew)
	var named []string
	n := 0
	var latest time.Time
	for i, r := range p.Records {
		if !r.End.After(limit) {
			continue
		}
		if n++; len(named) < 5 {
			named = append(named, fmt.Sprintf("records[%d] (id %s, instance %s) ends %s", i, r.ID, r.UID, r.End.UTC().Format(time.RFC3339)))
		}
		if r.End.After(latest) {
			latest = r.End
		}
	}
	if n > len(named) {
		named = append(named, fmt.Sprintf("and %d more, the latest ending %s", n-len(named), latest.UTC().Format(time.RFC3339)))
	}
	if p.Period != nil && p.Period.CoveredUntil.After(limit) {
		named = append(named, "period.coveredUntil is "+p.Period.CoveredUntil.UTC().Format(time.RFC3339))
	}
	if len(named) == 0 {
		return nil
	}
	return fmt.Errorf("%d records end after the hub's clock (%s) plus the allowed skew of %s, so the site's clock is ahead: %s; correct the site's clock (usage for hours that have not happened is never accepted)",
		n, now.Format(time.RFC3339), skew, strings.Join(named, "; "))
}

func storeInstances(ctx context.Context, tx pgx.Tx, site string, insts []usageexport.Instance) error {
	batch := &pgx.Batch{}
	for _, i := range insts {
		batch.Queue(`INSERT INTO hub_instances (site, uid, kind, namespace, name, created_at, deleted_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (site, uid) DO UPDATE SET deleted_at = COALESCE(hub_instances.deleted_at, EXCLUDED.deleted_at)`,
			site, i.UID, i.Kind, i.Namespace, i.Name, i.CreatedAt, i.DeletedAt)
	}
	return tx.SendBatch(ctx, batch).Close()
}

// uniqueViolation is PostgreSQL's SQLSTATE for a duplicate key.
const uniqueViolation = "23505"

// storeRecords stores the records not yet known and returns how many.
// Most files bring only new records (a month uploaded once, a batch
// streamed once), so it first copies them straight into hub_records, as
// fast as COPY goes. If any is already there, that copy is undone (a
// savepoint) and they go through a temporary table instead, from which
// only the new ones are inserted.
func storeRecords(ctx context.Context, tx pgx.Tx, site string, recs []usageexport.Record) (int64, error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return 0, err
	}
	n, err := copyRecords(ctx, sp, "hub_records", site, recs)
	if err == nil {
		return n, sp.Commit(ctx)
	}
	if err := sp.Rollback(ctx); err != nil {
		return 0, err
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != uniqueViolation {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE hub_incoming (LIKE hub_records) ON COMMIT DROP`); err != nil {
		return 0, err
	}
	if _, err := copyRecords(ctx, tx, "hub_incoming", site, recs); err != nil {
		return 0, err
	}
	tag, err := tx.Exec(ctx, `INSERT INTO hub_records SELECT * FROM hub_incoming ON CONFLICT (id) DO NOTHING`)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// copyRecords copies recs into table with COPY (binary).
func copyRecords(ctx context.Context, tx pgx.Tx, table, site string, recs []usageexport.Record) (int64, error) {
	i := 0
	row := make([]any, 10)
	var labels map[string]string
	var labelsJSON []byte
	return tx.CopyFrom(ctx, pgx.Identifier{table},
		[]string{"id", "site", "uid", "start_at", "end_at", "milli_vcores", "memory_bytes", "storage_bytes", "labels", "milli_vcore_seconds"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == len(recs) {
				return nil, nil
			}
			r := &recs[i]
			i++
			// Records of one interval share their labels: encode each
			// set once, not once per record.
			if labelsJSON == nil || (labels == nil) != (r.Labels == nil) || !maps.Equal(labels, r.Labels) {
				b, err := json.Marshal(r.Labels)
				if err != nil {
					return nil, err
				}
				labels, labelsJSON = r.Labels, b
			}
			row[0], row[1], row[2], row[3], row[4] = r.ID, site, r.UID, r.Start, r.End
			row[5], row[6], row[7], row[8], row[9] = r.MilliVCores, r.MemoryBytes, r.StorageBytes, labelsJSON, r.MilliVCoreSeconds
			return row, nil
		}))
}

func (h *Hub) log() *slog.Logger {
	if h.Log == nil {
		return slog.Default()
	}
	return h.Log
}
