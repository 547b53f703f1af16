package controldb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// OpenWhenReady is Open for a controldb that may not be up yet: right after
// `helm install`, the controller starts beside the controldb pod and would
// otherwise exit and crash-loop until it is ready. It retries every failure
// but a malformed URL, which no wait can fix, and gives up only when ctx ends.
func OpenWhenReady(ctx context.Context, url string, log *slog.Logger) (*DB, error) {
	if _, err := pgxpool.ParseConfig(url); err != nil {
		return nil, fmt.Errorf("controldb: %w", err)
	}
	const firstWait, maxWait = time.Second, 15 * time.Second
	wait := firstWait
	for attempt := 1; ; attempt++ {
		db, err := Open(ctx, url)
		if err == nil {
			if attempt > 1 {
				log.Info("controldb is ready", "attempts", attempt)
			}
			return db, nil
		}
		log.Warn("controldb is not ready yet; waiting", "attempt", attempt, "retryIn", wait, "err", err)
		select {
		case <-ctx.Done():
			return nil, errors.Join(ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, maxWait)
	}
}
