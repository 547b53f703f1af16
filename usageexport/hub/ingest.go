package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outpostdata/outpost/usageexport"
)

// Hub receives and serves usage.
type Hub struct {
	Pool *pgxpool.Pool
	// Warning and Overdue are how long a site may stay silent before it is
	// shown as late; zero means 48 hours and 30 days.
	Warning, Overdue time.Duration
	Log              *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

func (h *Hub) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// BadFileError is a file or batch the hub refuses because of its content;
// the HTTP answer is 400 with its message.
type BadFileError struct{ Reason error }

func (e *BadFileError) Error() string { return e.Reason.Error() }
func (e *BadFileError) Unwrap() error { return e.Reason }

// Ingest verifies data against the site's registered key and stores its
// records, each once. Receiving the same bytes again changes nothing and
// says so in the receipt.
func (h *Hub) Ingest(ctx context.Context, site Site, data []byte, wantKind string) (*usageexport.Receipt, error) {
	v, err := usageexport.Verify(data, usageexport.VerifyOptions{PublicKey: site.PublicKey})
	if err != nil {
		return nil, &BadFileError{Reason: err}
	}
	p := v.Payload
	if p.Kind != wantKind {
		return nil, &BadFileError{Reason: fmt.Errorf("kind: %q sent to the endpoint for %q", p.Kind, wantKind)}
	}
	rc := &usageexport.Receipt{PayloadSHA256: v.PayloadSHA256, Site: site.Name, Kind: p.Kind, Records: int64(len(p.Records))}
	var month *string
	if p.Period != nil {
		month = &p.Period.Month
	}
	err = pgx.BeginFunc(ctx, h.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE hub_sites SET last_seen = GREATEST(last_seen, $2) WHERE name = $1`, site.Name, h.now()); err != nil {
			return err
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
		_, err = tx.Exec(ctx, `INSERT INTO hub_receipts (payload_sha256, site, kind, month, records, new_records)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`, v.PayloadSHA256, site.Name, p.Kind, month, rc.Records, rc.NewRecords)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store usage from %s: %w", site.Name, err)
	}
	h.log().Info("usage received", "site", site.Name, "kind", p.Kind, "records", rc.Records, "new", rc.NewRecords, "duplicate", rc.Duplicate)
	return rc, nil
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
