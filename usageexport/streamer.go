package usageexport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Streamer sends the hub's backlog, every record the hub has not
// acknowledged, in signed batches, and marks records acknowledged only
// once the hub has said so. A lost acknowledgement means the batch is sent
// again, and the hub stores each record once: nothing is lost and nothing
// is doubled. The backlog holds records sampled in any mode, so a site
// that switches from indirect to direct sends its past too; the hub counts
// a record it already has from an uploaded export once.
//
// A batch the hub refuses with a 4xx that retrying cannot change (a bad
// signature after the signing key was re-created, a record the hub finds
// wrong) is set aside with the hub's reason, and the batches after it keep
// flowing. RetryRefused puts set-aside records back in the queue.
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

	// serverTime is the hub's time from the last acknowledgement that
	// carried one, and localAt the site's clock when it arrived.
	serverTime, localAt time.Time
}

// Backlog is the number of records the hub has not acknowledged, set-aside
// ones included.
func Backlog(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	var n int64
	// Two counts, so each is answered from its own partial index.
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM usage_records WHERE acked_at IS NULL AND refusal_id IS NULL)
		+ (SELECT count(*) FROM usage_records WHERE refusal_id IS NOT NULL AND acked_at IS NULL)`).Scan(&n); err != nil {
		return 0, fmt.Errorf("usage backlog: %w", err)
	}
	return n, nil
}

// Flush sends batches until the backlog is empty or the hub cannot be
// reached, and returns how many records the hub acknowledged. Refused
// batches are set aside on the way and do not stop it.
func (s *Streamer) Flush(ctx context.Context) (int, error) {
	sent := 0
	for {
		n, refused, err := s.sendBatch(ctx)
		sent += n
		if err != nil || (n == 0 && !refused) {
			return sent, err
		}
	}
}

// Heartbeat sends an empty batch, for the hub's time when there is nothing
// to send (see ClockCheck).
func (s *Streamer) Heartbeat(ctx context.Context) error {
	_, err := s.send(ctx, nil)
	return err
}

// HubTime returns the hub's time from the last acknowledgement that carried
// one and the site's clock when it arrived; ok is false when there was none.
func (s *Streamer) HubTime() (hub, local time.Time, ok bool) {
	return s.serverTime, s.localAt, !s.serverTime.IsZero()
}

func (s *Streamer) sendBatch(ctx context.Context) (sent int, refused bool, err error) {
	size := s.BatchSize
	if size <= 0 {
		size = 5000
	}
	rows, err := s.Pool.Query(ctx, `SELECT id, uid, start_at, end_at, milli_vcores, memory_bytes, storage_bytes, labels, milli_vcore_seconds
		FROM usage_records WHERE acked_at IS NULL AND refusal_id IS NULL ORDER BY uid, start_at, id LIMIT $1`, size)
	if err != nil {
		return 0, false, fmt.Errorf("usage backlog: %w", err)
	}
	recs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Record, error) {
		var rec Record
		err := r.Scan(&rec.ID, &rec.UID, &rec.Start, &rec.End, &rec.MilliVCores, &rec.MemoryBytes, &rec.StorageBytes, &rec.Labels, &rec.MilliVCoreSeconds)
		rec.Start, rec.End, rec.VCoreHours = rec.Start.UTC(), rec.End.UTC(), VCoreHours(rec.MilliVCoreSeconds)
		return rec, err
	})
	if err != nil || len(recs) == 0 {
		return 0, false, err
	}
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	_, err = s.send(ctx, recs)
	var hubErr *HubError
	if errors.As(err, &hubErr) && setAside(hubErr.Status) {
		if err := s.setAside(ctx, ids, hubErr); err != nil {
			return 0, false, err
		}
		return 0, true, nil
	}
	if err != nil {
		return 0, false, err
	}
	if _, err := s.Pool.Exec(ctx, `UPDATE usage_records SET acked_at = now() WHERE id = ANY($1) AND acked_at IS NULL`, ids); err != nil {
		return 0, false, fmt.Errorf("usage backlog: mark acknowledged: %w", err)
	}
	if err := SetState(ctx, s.Pool, StateLastUpload, second(s.clock().Now())); err != nil {
		return 0, false, err
	}
	return len(recs), false, nil
}

// setAside says whether a refusal with this status is the batch's own
// fault, which sending it again would not change. Not: a bad or missing
// token (every batch would fail the same way, so they wait), and the 4xx
// that mean "later" (timeout, too many requests).
func setAside(status int) bool {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusRequestTimeout, http.StatusTooManyRequests:
		return false
	}
	return status >= 400 && status < 500
}

// setAside records the hub's refusal and sets the batch's records aside
// with it, in one transaction.
func (s *Streamer) setAside(ctx context.Context, ids []string, refusal *HubError) error {
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		var id int64
		if err := tx.QueryRow(ctx, `INSERT INTO usage_refusals (refused_at, status, reason) VALUES ($1, $2, $3) RETURNING id`,
			second(s.clock().Now()), refusal.Status, refusal.Reason).Scan(&id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE usage_records SET refusal_id = $2 WHERE id = ANY($1)`, ids, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("usage backlog: set aside a refused batch: %w", err)
	}
	s.log().Warn("the hub refused a usage batch; it is set aside, the rest keeps flowing (`outpost usage retry` sends it again)",
		"records", len(ids), "status", refusal.Status, "reason", refusal.Reason)
	return nil
}

// send signs recs as one batch and posts it. An acknowledgement that
// carries the hub's time is remembered (HubTime).
func (s *Streamer) send(ctx context.Context, recs []Record) (*Receipt, error) {
	insts, err := s.instances(ctx, recs)
	if err != nil {
		return nil, err
	}
	labels := s.SiteLabels
	if labels == nil {
		labels = map[string]string{}
	}
	if recs == nil {
		recs = []Record{}
	}
	p := &Payload{
		FormatVersion: FormatVersion, Kind: KindBatch,
		Site:              SiteInfo{ID: SiteID(s.Key.Public()), Name: s.SiteName, Labels: labels},
		ControllerVersion: s.ControllerVersion, GeneratedAt: second(s.clock().Now()),
		Instances: insts, Records: recs,
	}
	p.Totals, p.Total = totals(recs)
	payload, err := encodePayload(p)
	if err != nil {
		return nil, err
	}
	file, err := Seal(payload, s.Key)
	if err != nil {
		return nil, err
	}
	o, err := OpenSigned(file)
	if err != nil {
		return nil, err
	}
	rc, err := post(ctx, PathBatches, file, o.PayloadSHA256, s.Hub)
	if err != nil {
		return nil, err
	}
	if rc.ServerTime != nil {
		s.serverTime, s.localAt = rc.ServerTime.UTC(), s.clock().Now()
	}
	return rc, nil
}

// instances are the instances recs (ordered by uid) belong to.
func (s *Streamer) instances(ctx context.Context, recs []Record) ([]Instance, error) {
	uids := []string{}
	for i, r := range recs {
		if i == 0 || recs[i-1].UID != r.UID {
			uids = append(uids, r.UID)
		}
	}
	rows, err := s.Pool.Query(ctx, `SELECT uid, kind, namespace, name, created_at, deleted_at FROM usage_instances WHERE uid = ANY($1) ORDER BY uid`, uids)
	if err != nil {
		return nil, fmt.Errorf("usage backlog: %w", err)
	}
	insts, err := pgx.CollectRows(rows, scanInstance)
	if err != nil {
		return nil, fmt.Errorf("usage backlog: %w", err)
	}
	return insts, nil
}

func (s *Streamer) clock() Clock {
	if s.Clock == nil {
		return SystemClock{}
	}
	return s.Clock
}

func (s *Streamer) log() *slog.Logger {
	if s.Log == nil {
		return slog.Default()
	}
	return s.Log
}
