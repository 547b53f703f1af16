package usageexport

import (
	"fmt"
	"time"
)

// Condition types and reasons of usage freshness on the DataController.
const (
	ConditionUsageExported = "UsageExported"
	ConditionUsageUploaded = "UsageUploaded"

	ReasonFresh   = "Fresh"
	ReasonStale   = "Stale"
	ReasonOverdue = "Overdue"
)

// DefaultWarnAfter and DefaultOverdueAfter are the freshness thresholds
// when the DataController does not set them.
const (
	DefaultWarnAfter    = 48 * time.Hour
	DefaultOverdueAfter = 30 * 24 * time.Hour
)

// Freshness says whether usage left the site recently enough by the route
// condType names. last is when it last did (nil: never); since is when
// metering began, from which a site that never exported counts. The
// verdict is True while fresh, False with reason Stale after warn, and
// Overdue after overdue.
func Freshness(condType string, last *time.Time, since, now time.Time, warn, overdue time.Duration) Verdict {
	if warn <= 0 {
		warn = DefaultWarnAfter
	}
	if overdue <= 0 {
		overdue = DefaultOverdueAfter
	}
	ref, what := since, "metering began"
	if last != nil {
		ref, what = *last, "usage last left the site"
	}
	age := now.Sub(ref).Truncate(time.Minute)
	c := Verdict{Type: condType, True: true, Reason: ReasonFresh,
		Message: fmt.Sprintf("%s %s ago", what, age)}
	switch {
	case age >= overdue:
		c.True, c.Reason = false, ReasonOverdue
		c.Message = fmt.Sprintf("%s %s ago, longer than the overdue threshold %s", what, age, overdue)
	case age >= warn:
		c.True, c.Reason = false, ReasonStale
		c.Message = fmt.Sprintf("%s %s ago, longer than %s", what, age, warn)
	}
	return c
}
