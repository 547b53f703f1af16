package usageexport

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// FreshnessCondition says whether usage left the site recently enough.
// last is when it last did (nil: never); since is when metering began, from
// which a site that never exported counts. The condition is True while
// fresh, False with reason Stale after warn, and Overdue after overdue.
func FreshnessCondition(condType string, last *time.Time, since, now time.Time, warn, overdue time.Duration) metav1.Condition {
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
	c := metav1.Condition{Type: condType, Status: metav1.ConditionTrue, Reason: ReasonFresh,
		Message: fmt.Sprintf("%s %s ago", what, age)}
	switch {
	case age >= overdue:
		c.Status, c.Reason = metav1.ConditionFalse, ReasonOverdue
		c.Message = fmt.Sprintf("%s %s ago, longer than the overdue threshold %s", what, age, overdue)
	case age >= warn:
		c.Status, c.Reason = metav1.ConditionFalse, ReasonStale
		c.Message = fmt.Sprintf("%s %s ago, longer than %s", what, age, warn)
	}
	return c
}
