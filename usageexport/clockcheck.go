package usageexport

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultClockSkew is how far the site's clock may be from a trusted one
// (and records may end after the newest trusted time) when the meter does
// not say otherwise.
const DefaultClockSkew = 10 * time.Minute

// ConditionClockSkew is True while metering is held back because the
// site's clock cannot be trusted: it disagrees with a trusted clock, or it
// went back behind what has already been seen.
const ConditionClockSkew = "ClockSkew"

// Reasons of ConditionClockSkew.
const (
	ReasonClockAgrees   = "ClockAgrees"
	ReasonClockAhead    = "ClockAhead"
	ReasonClockBehind   = "ClockBehind"
	ReasonClockWentBack = "ClockWentBack"
)

// Keys of usage_state for the clock check: the newest trusted time seen,
// and the newest site time seen while the clock was believed.
const (
	StateTrustedTime    = "trusted_time"
	StateClockHighWater = "clock_high_water"
)

// Reading is one look at a clock the site trusts more than its own: the
// hub's time in its acknowledgement, or controldb's now() when controldb
// runs on another host. Local is the site's clock at the same moment.
type Reading struct {
	Source         string
	Trusted, Local time.Time
}

// ClockVerdict is what CheckClock decided.
type ClockVerdict struct {
	// Condition is ConditionClockSkew, True when Skewed.
	Condition metav1.Condition
	// Skewed means: do not bill now.
	Skewed bool
	// NotAfter is the latest time a record may end (the newest trusted
	// time plus the skew); zero when no trusted time was ever seen.
	NotAfter time.Time
}

// CheckClock judges the site's clock (local, now) against this pass's
// trusted readings and what earlier passes saw. The clock is skewed when a
// reading differs from it by more than skew, or when it is more than skew
// behind the newest time it showed while believed (it jumped back: hours up
// to there are recorded, and nothing is billed until it catches up).
// Without any trusted reading a clock set ahead cannot be told from time
// passing; the README says so.
func CheckClock(ctx context.Context, pool *pgxpool.Pool, local time.Time, readings []Reading, skew time.Duration) (ClockVerdict, error) {
	if skew <= 0 {
		skew = DefaultClockSkew
	}
	v := ClockVerdict{Condition: metav1.Condition{Type: ConditionClockSkew, Status: metav1.ConditionFalse, Reason: ReasonClockAgrees,
		Message: "the site's clock agrees with every trusted clock it has seen"}}
	for _, r := range readings {
		if err := SetState(ctx, pool, StateTrustedTime, second(r.Trusted)); err != nil {
			return v, err
		}
		off := r.Local.Sub(r.Trusted)
		switch {
		case off > skew:
			v.Skewed, v.Condition.Reason = true, ReasonClockAhead
		case off < -skew:
			v.Skewed, v.Condition.Reason = true, ReasonClockBehind
		default:
			continue
		}
		v.Condition.Message = fmt.Sprintf("the site's clock (%s) is %s off %s (%s), more than the %s allowed: no usage is billed until they agree",
			second(r.Local).Format(time.RFC3339), off.Abs().Round(time.Second), r.Source, second(r.Trusted).Format(time.RFC3339), skew)
		break
	}
	highWater, seen, err := State(ctx, pool, StateClockHighWater)
	if err != nil {
		return v, err
	}
	if !v.Skewed && seen && local.Before(highWater.Add(-skew)) {
		v.Skewed, v.Condition.Reason = true, ReasonClockWentBack
		v.Condition.Message = fmt.Sprintf("the site's clock (%s) went back behind %s, a time it showed before: usage up to then is recorded, and no more is billed until the clock passes it",
			second(local).Format(time.RFC3339), highWater.UTC().Format(time.RFC3339))
	}
	if v.Skewed {
		v.Condition.Status = metav1.ConditionTrue
		return v, nil
	}
	if err := SetState(ctx, pool, StateClockHighWater, second(local)); err != nil {
		return v, err
	}
	trusted, ok, err := State(ctx, pool, StateTrustedTime)
	if err != nil {
		return v, err
	}
	if ok {
		v.NotAfter = trusted.UTC().Add(skew)
	}
	return v, nil
}
