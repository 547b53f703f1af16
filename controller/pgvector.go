package controller

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/postgres"
)

// ConditionParallelIndexBuilds says whether the instance builds indexes
// with parallel workers. While its pgvector is older than 0.8.2, parallel
// HNSW builds overflow a buffer (CVE-2026-3172), so the postgres package
// writes max_parallel_maintenance_workers = 0 into the instance's settings:
// every build, a user's own CREATE INDEX ... USING hnsw included, is serial.
const ConditionParallelIndexBuilds = "ParallelIndexBuilds"

// Reasons of ConditionParallelIndexBuilds.
const (
	ReasonPgvectorSafe   = "PgvectorSafe"
	ReasonPgvectorTooOld = "PgvectorTooOld"
)

// setParallelIndexBuilds reports the serial build guard in the status, from
// the pgvector version the runtime observed.
func (r *InstanceReconciler) setParallelIndexBuilds(inst *outpostv1.PostgresInstance, version string) {
	if version == "" {
		return
	}
	c := metav1.Condition{Type: ConditionParallelIndexBuilds, ObservedGeneration: inst.Generation,
		Status: metav1.ConditionTrue, Reason: ReasonPgvectorSafe,
		Message: "pgvector " + version + " builds HNSW indexes with parallel workers safely"}
	if !postgres.PgvectorBuildsInParallelSafely(version) {
		c.Status, c.Reason = metav1.ConditionFalse, ReasonPgvectorTooOld
		c.Message = "pgvector " + version + " is older than 0.8.2 (CVE-2026-3172): max_parallel_maintenance_workers = 0 on this instance, so every index builds serially; install pgvector 0.8.7 or newer (make deps)"
	}
	meta.SetStatusCondition(&inst.Status.Conditions, c)
}
