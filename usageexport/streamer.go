package usageexport

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Streamer sends the direct-mode outbox to the hub in signed batches and
// marks records sent only once the hub has acknowledged them. A lost
// acknowledgement means the batch is sent again, and the hub stores each
// record once: nothing is lost and nothing is doubled.
type Streamer struct {
	Pool  *pgxpool.Pool
	Key   SigningKey
	Clock Clock
	// SiteName, SiteLabels and ControllerVersion go into every batch.
	SiteName          string
	SiteLabels        map[string]string
	ControllerVersion string
	Hub               UploadOptions
	// BatchSize is records per batch; 0 means 5,000.
	BatchSize int
	Log       *slog.Logger
}

// Backlog is the number of records waiting in the outbox.
func Backlog(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	var n int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM usage_outbox WHERE sent_at IS NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("usage backlog: %w", err)
	}
	return n, nil
}

// Flush sends batches until the outbox is empty or the hub cannot be
// reached, and returns how many records the hub acknowledged.
func (s *Streamer) Flush(ctx context.Context) (int, error) {
	sent := 0
	for {
		n, err := s.sendBatch(ctx)
		sent += n
		if err != nil || n == 0 {
			return sent, err
		}
	}
}

func (s *Streamer) sendBatch(ctx context.Context) (int, error) {
	size := s.BatchSize
	if size <= 0 {
		size = 5000
	}
	rows, err := s.Pool.Query(ctx, `SELECT r.id, r.uid, r.start_at, r.end_at, r.milli_vcores, r.memory_bytes, r.storage_bytes, r.labels, r.milli_vcore_seconds
		FROM usage_outbox o JOIN usage_records r ON r.id = o.record_id
		WHERE o.sent_at IS NULL ORDER BY r.uid, r.start_at, r.id LIMIT $1`, size)
	if err != nil {
		return 0, fmt.Errorf("usage outbox: %w", err)
	}
	recs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Record, error) {
		var rec Record
		err := r.Scan(&rec.ID, &rec.UID, &rec.Start, &rec.End, &rec.MilliVCores, &rec.MemoryBytes, &rec.StorageBytes, &rec.Labels, &rec.MilliVCoreSeconds)
		rec.Start, rec.End, rec.VCoreHours = rec.Start.UTC(), rec.End.UTC(), VCoreHours(rec.MilliVCoreSeconds)
		return rec, err
	})
	if err != nil || len(recs) == 0 {
		return 0, err
	}
	uids, ids := []string{}, make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
		if i == 0 || recs[i-1].UID != r.UID {
			uids = append(uids, r.UID)
		}
	}
	rows, err = s.Pool.Query(ctx, `SELECT uid, kind, namespace, name, created_at, deleted_at FROM usage_instances WHERE uid = ANY($1) ORDER BY uid`, uids)
	if err != nil {
		return 0, fmt.Errorf("usage outbox: %w", err)
	}
	insts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Instance, error) {
		var i Instance
		err := r.Scan(&i.UID, &i.Kind, &i.Namespace, &i.Name, &i.CreatedAt, &i.DeletedAt)
		i.CreatedAt = i.CreatedAt.UTC()
		if i.DeletedAt != nil {
			d := i.DeletedAt.UTC()
			i.DeletedAt = &d
		}
		return i, err
	})
	if err != nil {
		return 0, fmt.Errorf("usage outbox: %w", err)
	}
	clock := s.Clock
	if clock == nil {
		clock = SystemClock{}
	}
	labels := s.SiteLabels
	if labels == nil {
		labels = map[string]string{}
	}
	p := &Payload{
		FormatVersion: FormatVersion, Kind: KindBatch,
		Site:              SiteInfo{ID: SiteID(s.Key.Public()), Name: s.SiteName, Labels: labels},
		ControllerVersion: s.ControllerVersion, GeneratedAt: second(clock.Now()),
		Instances: insts, Records: recs,
	}
	p.Totals, p.Total = totals(recs)
	payload, err := encodePayload(p)
	if err != nil {
		return 0, err
	}
	file, err := Seal(payload, s.Key)
	if err != nil {
		return 0, err
	}
	o, err := OpenSigned(file)
	if err != nil {
		return 0, err
	}
	if _, err := post(ctx, PathBatches, file, o.PayloadSHA256, s.Hub); err != nil {
		return 0, err
	}
	if _, err := s.Pool.Exec(ctx, `UPDATE usage_outbox SET sent_at = now() WHERE record_id = ANY($1) AND sent_at IS NULL`, ids); err != nil {
		return 0, fmt.Errorf("usage outbox: mark sent: %w", err)
	}
	if err := SetState(ctx, s.Pool, StateLastUpload, second(clock.Now())); err != nil {
		return 0, err
	}
	return len(recs), nil
}

// Run flushes the outbox every interval until ctx ends. While the hub is
// unreachable records wait, and the next flush sends them.
func (s *Streamer) Run(ctx context.Context, interval func() time.Duration) {
	for {
		if n, err := s.Flush(ctx); err != nil && ctx.Err() == nil {
			s.log().Warn("usage not streamed to the hub; will retry", "err", err)
		} else if n > 0 {
			s.log().Debug("usage streamed", "records", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval()):
		}
	}
}

func (s *Streamer) log() *slog.Logger {
	if s.Log == nil {
		return slog.Default()
	}
	return s.Log
}
