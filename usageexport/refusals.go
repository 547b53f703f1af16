package usageexport

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ConditionUsageStreaming says whether the direct-mode backlog flows to
// the hub, and names the hub's reason when it refused a batch.
const ConditionUsageStreaming = "UsageStreaming"

// Reasons of ConditionUsageStreaming.
const (
	ReasonStreaming      = "Streaming"
	ReasonHubUnreachable = "HubUnreachable"
	ReasonBatchRefused   = "BatchRefused"
)

// Refused is what the hub refused and the site has set aside.
type Refused struct {
	Batches, Records int64
	// Last is the latest refusal: when, the HTTP status and the hub's reason.
	LastAt     time.Time
	LastStatus int
	LastReason string
}

// RefusedBatches sums up the set-aside batches; Batches is 0 when there
// are none.
func RefusedBatches(ctx context.Context, pool *pgxpool.Pool) (Refused, error) {
	var r Refused
	err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM usage_refusals),
			(SELECT count(*) FROM usage_records WHERE refusal_id IS NOT NULL AND acked_at IS NULL)`).Scan(&r.Batches, &r.Records)
	if err != nil || r.Batches == 0 {
		return r, wrapRefused(err)
	}
	err = pool.QueryRow(ctx, `SELECT refused_at, status, reason FROM usage_refusals ORDER BY id DESC LIMIT 1`).
		Scan(&r.LastAt, &r.LastStatus, &r.LastReason)
	return r, wrapRefused(err)
}

func wrapRefused(err error) error {
	if err != nil {
		return fmt.Errorf("usage refused batches: %w", err)
	}
	return nil
}

// RetryRefused puts every set-aside record back in the backlog, to be sent
// again by the next flush (`outpost usage retry`, once the cause is fixed),
// and returns how many records that is.
func RetryRefused(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE usage_records SET refusal_id = NULL WHERE refusal_id IS NOT NULL`)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		_, err = tx.Exec(ctx, `DELETE FROM usage_refusals`)
		return err
	})
	return n, wrapRefused(err)
}

// Streaming is the verdict of ConditionUsageStreaming for a site in direct mode
// (or not) whose last attempt to stream failed with streamErr (nil: it
// did not fail). It is nil in indirect mode with nothing set aside: there
// is nothing to say.
func Streaming(ctx context.Context, pool *pgxpool.Pool, direct bool, streamErr error) (*Verdict, error) {
	r, err := RefusedBatches(ctx, pool)
	if err != nil {
		return nil, err
	}
	c := &Verdict{Type: ConditionUsageStreaming, True: true, Reason: ReasonStreaming,
		Message: "every record the hub has not acknowledged is on its way"}
	switch {
	case r.Batches > 0:
		c.True, c.Reason = false, ReasonBatchRefused
		c.Message = fmt.Sprintf("the hub refused %d batch(es), %d records, set aside while the rest flows; last at %s (%d): %s. Fix the cause, then run `outpost usage retry`",
			r.Batches, r.Records, r.LastAt.UTC().Format(time.RFC3339), r.LastStatus, r.LastReason)
	case !direct:
		return nil, nil
	case streamErr != nil:
		c.True, c.Reason, c.Message = false, ReasonHubUnreachable, streamErr.Error()
	}
	return c, nil
}
