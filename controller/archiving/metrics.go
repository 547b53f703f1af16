package archiving

import "github.com/prometheus/client_golang/prometheus"

// Metrics describes the archiver's Prometheus samples. The controller
// labels them by namespace and instance; the instance manager serves one
// instance and labels them with nothing.
type Metrics struct {
	archived, failures, pending, oldest *prometheus.Desc
}

// NewMetrics returns the descriptions with the given variable labels.
func NewMetrics(labels ...string) *Metrics {
	return &Metrics{
		archived: prometheus.NewDesc("outpost_wal_archived_total", "WAL files archived, as pg_stat_archiver counts them since its statistics were reset.", labels, nil),
		failures: prometheus.NewDesc("outpost_wal_archive_failures_total", "Failed attempts to archive a WAL file, as pg_stat_archiver counts them since its statistics were reset.", labels, nil),
		pending:  prometheus.NewDesc("outpost_wal_archive_pending", "WAL files waiting to be archived (.ready files in pg_wal/archive_status).", labels, nil),
		oldest:   prometheus.NewDesc("outpost_wal_oldest_unarchived_age_seconds", "How long the oldest WAL file waiting to be archived has waited; 0 when none waits.", labels, nil),
	}
}

// Describe sends the descriptions.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.archived
	ch <- m.failures
	ch <- m.pending
	ch <- m.oldest
}

// Collect sends the samples of st with the label values.
func (m *Metrics) Collect(ch chan<- prometheus.Metric, st *Status, labelValues ...string) {
	ch <- prometheus.MustNewConstMetric(m.archived, prometheus.CounterValue, float64(st.ArchivedCount), labelValues...)
	ch <- prometheus.MustNewConstMetric(m.failures, prometheus.CounterValue, float64(st.FailedCount), labelValues...)
	ch <- prometheus.MustNewConstMetric(m.pending, prometheus.GaugeValue, float64(st.Pending), labelValues...)
	ch <- prometheus.MustNewConstMetric(m.oldest, prometheus.GaugeValue, st.OldestPendingAge.Seconds(), labelValues...)
}
