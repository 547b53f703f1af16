package usageexport

import (
	"context"
	"fmt"
	"sync"
	"time"
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
// The newest reading, carried forward by the time elapsed since (see
// trustedClock), is the newest trusted time of the rules below.
type Reading struct {
	Source         string
	Trusted, Local time.Time
}

// ClockVerdict is what checkClock decided: ConditionClockSkew's verdict,
// True when Skewed, with the time records may end by.
type ClockVerdict struct {
	Verdict
	// Skewed means: do not bill now.
	Skewed bool
	// NotAfter is the latest time a record may end (the newest trusted
	// time, carried forward, plus the skew); zero when this process has
	// seen no trusted time.
	NotAfter time.Time
}

// trustedClock remembers the newest trusted reading of this process. Its
// Local time carries the monotonic clock when it is the system's, so the
// trusted time can be carried forward by the time that really elapsed,
// which a wall clock set ahead or back does not change.
type trustedClock struct {
	mu       sync.Mutex
	newest   Reading
	haveSeen bool
}

func (g *trustedClock) observe(rs []Reading) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, r := range rs {
		if !g.haveSeen || r.Trusted.After(g.newest.Trusted) {
			g.newest, g.haveSeen = r, true
		}
	}
}

// estimate is the trusted time now: the newest reading carried forward by
// the time elapsed since, as local (from the same clock) measures it.
func (g *trustedClock) estimate(local time.Time) (Reading, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.haveSeen {
		return Reading{}, false
	}
	return Reading{Source: g.newest.Source, Trusted: g.newest.Trusted.Add(local.Sub(g.newest.Local)), Local: local}, true
}

// checkClock judges the site's clock (local, now) against this pass's
// trusted readings, the newest trusted time this process has seen (carried
// forward by the elapsed time) and what earlier passes saw. The clock is
// skewed when it differs from a trusted time by more than skew, or when it
// is more than skew behind the newest time it showed while believed (it
// jumped back: hours up to there are recorded, and nothing is billed until
// it catches up). Without any trusted reading a clock set ahead cannot be
// told from time passing; the README says so.
func (m *SiteMeter) checkClock(ctx context.Context, local time.Time, readings []Reading) (ClockVerdict, error) {
	skew := m.Skew
	if skew <= 0 {
		skew = DefaultClockSkew
	}
	pool := m.Pool
	v := ClockVerdict{Verdict: Verdict{Type: ConditionClockSkew, Reason: ReasonClockAgrees,
		Message: "the site's clock agrees with every trusted clock it has seen"}}
	for _, r := range readings {
		if err := SetState(ctx, pool, StateTrustedTime, second(r.Trusted)); err != nil {
			return v, err
		}
	}
	m.trusted.observe(readings)
	est, estimated := m.trusted.estimate(local)
	for _, r := range append(readings, est) {
		if r.Trusted.IsZero() {
			continue
		}
		off := r.Local.Sub(r.Trusted)
		switch {
		case off > skew:
			v.Skewed, v.Reason = true, ReasonClockAhead
		case off < -skew:
			v.Skewed, v.Reason = true, ReasonClockBehind
		default:
			continue
		}
		v.Message = fmt.Sprintf("the site's clock (%s) is %s off %s (%s), more than the %s allowed: no usage is billed until they agree",
			second(r.Local).Format(time.RFC3339), off.Abs().Round(time.Second), r.Source, second(r.Trusted).Format(time.RFC3339), skew)
		break
	}
	highWater, seen, err := State(ctx, pool, StateClockHighWater)
	if err != nil {
		return v, err
	}
	if !v.Skewed && seen && local.Before(highWater.Add(-skew)) {
		v.Skewed, v.Reason = true, ReasonClockWentBack
		v.Message = fmt.Sprintf("the site's clock (%s) went back behind %s, a time it showed before: usage up to then is recorded, and no more is billed until the clock passes it",
			second(local).Format(time.RFC3339), highWater.UTC().Format(time.RFC3339))
	}
	if v.Skewed {
		v.True = true
		return v, nil
	}
	if err := SetState(ctx, pool, StateClockHighWater, second(local)); err != nil {
		return v, err
	}
	if estimated {
		v.NotAfter = est.Trusted.Add(skew)
	}
	return v, nil
}
