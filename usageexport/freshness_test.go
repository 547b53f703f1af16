package usageexport_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpostdata/outpost/usageexport"
)

func TestFreshnessFollowsTheConfiguredThresholdsInConditionsAndMetrics(t *testing.T) {
	since := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	last := since.Add(10 * time.Hour)
	warn, overdue := 12*time.Hour, 72*time.Hour
	m := usageexport.NewMetrics()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.Collectors()...)
	for _, tc := range []struct {
		age    time.Duration
		status string
		reason string
	}{
		{11 * time.Hour, "true", usageexport.ReasonFresh},
		{12 * time.Hour, "false", usageexport.ReasonStale}, // the default 48 h would still say Fresh
		{72 * time.Hour, "false", usageexport.ReasonOverdue},
	} {
		now := last.Add(tc.age)
		c := usageexport.Freshness(usageexport.ConditionUsageExported, &last, since, now, warn, overdue)
		if fmt.Sprint(c.True) != tc.status || c.Reason != tc.reason {
			t.Errorf("%s after the last export: %v/%s (%s), want %s/%s", tc.age, c.True, c.Reason, c.Message, tc.status, tc.reason)
		}
		m.Observe(usageexport.ConditionUsageExported, &last, since, now, warn, overdue, c.Reason, 7)
		got := gather(t, reg)
		want := map[string]float64{
			`outpost_usage_age_seconds{condition="UsageExported"}`:                          tc.age.Seconds(),
			`outpost_usage_warn_after_seconds{condition="UsageExported"}`:                   warn.Seconds(),
			`outpost_usage_overdue_after_seconds{condition="UsageExported"}`:                overdue.Seconds(),
			`outpost_usage_freshness{condition="UsageExported",reason="` + tc.reason + `"}`: 1,
			`outpost_usage_backlog_records{}`:                                               7,
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s after the last export: %s = %v, want %v (all: %v)", tc.age, k, got[k], v, got)
			}
		}
		if len(got) != 7 {
			t.Errorf("%d series, want 7 (one verdict per reason): %v", len(got), got)
		}
	}
}

// gather reads every series of reg as "name{label=value,...}" → value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	must(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			out[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = m.GetGauge().GetValue()
		}
	}
	return out
}
