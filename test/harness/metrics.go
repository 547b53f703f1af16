package harness

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// MetricValue gathers c and returns the value of the first sample of the
// metric name (counter or gauge), and whether there is one.
func MetricValue(tb testing.TB, c prometheus.Collector, name string) (float64, bool) {
	tb.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name || len(f.GetMetric()) == 0 {
			continue
		}
		m := f.GetMetric()[0]
		if m.GetCounter() != nil {
			return m.GetCounter().GetValue(), true
		}
		return m.GetGauge().GetValue(), true
	}
	return 0, false
}
