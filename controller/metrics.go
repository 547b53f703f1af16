package controller

import (
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/archiving"
)

// Metric descriptions of backups, by instance. The instance manager serves
// the archiver's with the same names, without the labels.
var (
	instanceLabels  = []string{"namespace", "instance"}
	archiverMetrics = archiving.NewMetrics(instanceLabels...)
	walOKDesc       = prometheus.NewDesc("outpost_wal_archiving_ok", "1 while the WALArchiving condition is True.", instanceLabels, nil)
	walDriftDesc    = prometheus.NewDesc("outpost_wal_archive_setting_drift_total", "Times an archive setting changed outside Outpost was found and restored.", instanceLabels, nil)
	verifyOKDesc    = prometheus.NewDesc("outpost_backup_verification_ok", "1 when the newest scheduled backup verification passed.", instanceLabels, nil)
	verifyTimeDesc  = prometheus.NewDesc("outpost_backup_verification_timestamp_seconds", "When the newest scheduled backup verification started.", instanceLabels, nil)
	verifyTookDesc  = prometheus.NewDesc("outpost_backup_verification_duration_seconds", "How long the newest scheduled backup verification took.", instanceLabels, nil)
	verifyRunsDesc  = prometheus.NewDesc("outpost_backup_verifications_total", "Scheduled backup verifications, by result.", append(instanceLabels, "result"), nil)
)

// BackupMetrics holds what the reconcilers last saw of each instance's WAL
// archiving and backup verification, and serves it to Prometheus. A nil
// *BackupMetrics records nothing.
type BackupMetrics struct {
	mu        sync.Mutex
	archiving map[string]archivingSample
	verified  map[string]outpostv1.VerificationStatus
	runs      map[string]map[outpostv1.VerificationResult]int
	drifts    map[string]int
}

type archivingSample struct {
	st *archiving.Status
	ok bool
}

// NewBackupMetrics returns empty metrics; register them with a registry.
func NewBackupMetrics() *BackupMetrics {
	return &BackupMetrics{
		archiving: map[string]archivingSample{}, verified: map[string]outpostv1.VerificationStatus{},
		runs: map[string]map[outpostv1.VerificationResult]int{}, drifts: map[string]int{},
	}
}

// observeArchiving keeps what the archiver did and whether the
// WALArchiving condition is True.
func (m *BackupMetrics) observeArchiving(key string, st *archiving.Status, ok bool) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.archiving[key] = archivingSample{st: st, ok: ok}
	m.drifts[key] += len(st.Drift)
}

func (m *BackupMetrics) forgetArchiving(key string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.archiving, key)
}

func (m *BackupMetrics) observeVerification(key string, v outpostv1.VerificationStatus) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.verified[key] = v
	if m.runs[key] == nil {
		m.runs[key] = map[outpostv1.VerificationResult]int{}
	}
	m.runs[key][v.Result]++
}

// Forget drops a deleted instance's samples.
func (m *BackupMetrics) Forget(namespace, name string) {
	if m == nil {
		return
	}
	key := namespace + "/" + name
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.archiving, key)
	delete(m.verified, key)
	delete(m.runs, key)
	delete(m.drifts, key)
}

// Describe implements prometheus.Collector.
func (m *BackupMetrics) Describe(ch chan<- *prometheus.Desc) {
	archiverMetrics.Describe(ch)
	for _, d := range []*prometheus.Desc{walOKDesc, walDriftDesc, verifyOKDesc, verifyTimeDesc, verifyTookDesc, verifyRunsDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *BackupMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for key, s := range m.archiving {
		ns, name, _ := strings.Cut(key, "/")
		archiverMetrics.Collect(ch, s.st, ns, name)
		ch <- prometheus.MustNewConstMetric(walOKDesc, prometheus.GaugeValue, b2f(s.ok), ns, name)
	}
	for key, n := range m.drifts {
		ns, name, _ := strings.Cut(key, "/")
		ch <- prometheus.MustNewConstMetric(walDriftDesc, prometheus.CounterValue, float64(n), ns, name)
	}
	for key, v := range m.verified {
		ns, name, _ := strings.Cut(key, "/")
		ch <- prometheus.MustNewConstMetric(verifyOKDesc, prometheus.GaugeValue, b2f(v.Result == outpostv1.VerificationPassed), ns, name)
		ch <- prometheus.MustNewConstMetric(verifyTimeDesc, prometheus.GaugeValue, float64(v.Time.Unix()), ns, name)
		var took time.Duration
		if v.Duration != nil {
			took = v.Duration.Duration
		}
		ch <- prometheus.MustNewConstMetric(verifyTookDesc, prometheus.GaugeValue, took.Seconds(), ns, name)
	}
	for key, byResult := range m.runs {
		ns, name, _ := strings.Cut(key, "/")
		for result, n := range byResult {
			ch <- prometheus.MustNewConstMetric(verifyRunsDesc, prometheus.CounterValue, float64(n), ns, name, string(result))
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
