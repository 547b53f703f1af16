package usageexport

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the usage gauges a controller exports: how long ago usage
// last left the site, the freshness thresholds and verdict, and the
// direct-mode backlog. The controller sets them each time it writes the
// DataController's usage status, so metrics and conditions agree.
type Metrics struct {
	age, warn, overdue, backlog *prometheus.GaugeVec
	state                       *prometheus.GaugeVec
}

// NewMetrics creates the gauges; register them with Collectors.
func NewMetrics() *Metrics {
	g := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "outpost", Subsystem: "usage", Name: name, Help: help}, labels)
	}
	return &Metrics{
		age:     g("age_seconds", "Seconds since usage last left the site (exported or uploaded when indirect, reached the hub when direct), or since metering began if it never did.", "condition"),
		warn:    g("warn_after_seconds", "Age after which the freshness condition turns False with reason Stale.", "condition"),
		overdue: g("overdue_after_seconds", "Age after which the freshness condition turns False with reason Overdue.", "condition"),
		state:   g("freshness", "1 for the current freshness verdict (reason Fresh, Stale or Overdue), 0 for the others.", "condition", "reason"),
		backlog: g("backlog_records", "Usage records the hub has not acknowledged yet (direct mode)."),
	}
}

// Collectors lists the gauges for a prometheus.Registerer.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.age, m.warn, m.overdue, m.state, m.backlog}
}

// Observe records one freshness evaluation: condType and the arguments of
// Freshness, the verdict's reason, and the hub's backlog.
func (m *Metrics) Observe(condType string, last *time.Time, since, now time.Time, warn, overdue time.Duration, reason string, backlog int64) {
	if warn <= 0 {
		warn = DefaultWarnAfter
	}
	if overdue <= 0 {
		overdue = DefaultOverdueAfter
	}
	ref := since
	if last != nil {
		ref = *last
	}
	// Only the condition in use is exported: a site that switches mode
	// should not keep showing the other one's stale age.
	for _, vec := range []*prometheus.GaugeVec{m.age, m.warn, m.overdue, m.state} {
		vec.Reset()
	}
	m.age.WithLabelValues(condType).Set(now.Sub(ref).Seconds())
	m.warn.WithLabelValues(condType).Set(warn.Seconds())
	m.overdue.WithLabelValues(condType).Set(overdue.Seconds())
	for _, r := range []string{ReasonFresh, ReasonStale, ReasonOverdue} {
		v := 0.0
		if r == reason {
			v = 1
		}
		m.state.WithLabelValues(condType, r).Set(v)
	}
	m.backlog.WithLabelValues().Set(float64(backlog))
}
