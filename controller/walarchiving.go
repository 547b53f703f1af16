package controller

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/archiving"
)

// Reasons of the WALArchiving condition.
const (
	ReasonArchiving      = "Archiving"
	ReasonArchiveFailing = "ArchiveFailing"
	ReasonArchiveStalled = "ArchiveStalled"
	ReasonSettingDrift   = "SettingDrift"
	ReasonArchiveOff     = "ArchiveModeOff"
)

// archiveStallAfter is how long a finished segment may wait for archiving
// before the archive counts as stalled even without a failure: wal-push
// hanging on an unresponsive store fails nothing, it just never returns.
// archive_timeout (60s) and a slow upload stay well below it.
const archiveStallAfter = 5 * time.Minute

// observeArchiving writes the WALArchiving condition from what the runtime
// read of the archiver, and emits events: a Warning for every drift found
// (the runtime has already put the managed value back) and one whenever
// the condition changes. Without spec.backup WAL goes nowhere by design, so
// only drift is reported.
func (r *InstanceReconciler) observeArchiving(inst *outpostv1.PostgresInstance, st *archiving.Status) {
	key := inst.Namespace + "/" + inst.Name
	if st == nil {
		return
	}
	if len(st.Drift) > 0 {
		r.Events.Event(inst, "Warning", ReasonSettingDrift, archiving.DriftMessage(st.Drift)+"; Outpost restored its own value")
	}
	status, reason, msg := archivingCondition(inst, st)
	// A copy: SetStatusCondition changes the condition in place.
	var was *metav1.Condition
	if c := meta.FindStatusCondition(inst.Status.Conditions, outpostv1.ConditionWALArchiving); c != nil {
		was = c.DeepCopy()
	}
	if reason == "" {
		meta.RemoveStatusCondition(&inst.Status.Conditions, outpostv1.ConditionWALArchiving)
		r.Metrics.forgetArchiving(key)
		return
	}
	r.Metrics.observeArchiving(key, st, status == metav1.ConditionTrue)
	meta.SetStatusCondition(&inst.Status.Conditions, metav1.Condition{
		Type: outpostv1.ConditionWALArchiving, Status: status, Reason: reason, Message: msg, ObservedGeneration: inst.Generation,
	})
	if was != nil && was.Status == status && was.Reason == reason {
		return
	}
	switch {
	case status != metav1.ConditionTrue && reason != ReasonSettingDrift:
		r.Events.Event(inst, "Warning", reason, msg)
	case status == metav1.ConditionTrue && was != nil:
		r.Events.Event(inst, "Normal", "ArchivingRecovered", msg)
	}
}

// archivingCondition judges st; an empty reason means no condition.
func archivingCondition(inst *outpostv1.PostgresInstance, st *archiving.Status) (metav1.ConditionStatus, string, string) {
	if len(st.Drift) > 0 {
		return metav1.ConditionFalse, ReasonSettingDrift, archiving.DriftMessage(st.Drift) + "; Outpost restored its own value"
	}
	if inst.Spec.Backup == nil {
		return "", "", ""
	}
	waiting := ""
	if st.Pending > 0 {
		waiting = fmt.Sprintf("; %d WAL files wait to be archived, the oldest (%s) for %s", st.Pending, st.OldestPendingWAL, roughly(st.OldestPendingAge))
	}
	switch {
	case st.ArchiveMode != "" && st.ArchiveMode != "on" && st.ArchiveMode != "always":
		// ALTER SYSTEM SET archive_mode = off and a restart: nothing fails,
		// nothing waits, and nothing is archived.
		return metav1.ConditionFalse, ReasonArchiveOff, fmt.Sprintf("archive_mode is %q: no WAL is archived, so no point after the last base backup can be restored; Outpost manages archive_mode = on, which takes a restart", st.ArchiveMode)
	case st.Failing():
		return metav1.ConditionFalse, ReasonArchiveFailing, fmt.Sprintf("archiving WAL segment %s failed at %s (%d failures since statistics were reset)%s; see the PostgreSQL log for wal-push's error",
			st.LastFailedWAL, st.LastFailedTime.UTC().Format(time.RFC3339), st.FailedCount, waiting)
	case st.OldestPendingAge > archiveStallAfter:
		return metav1.ConditionFalse, ReasonArchiveStalled, fmt.Sprintf("WAL segment %s has waited %s to be archived without a failure: wal-push does not return; is the object store reachable?%s",
			st.OldestPendingWAL, roughly(st.OldestPendingAge), waiting)
	case st.LastArchivedWAL == "":
		return metav1.ConditionTrue, ReasonArchiving, "no WAL segment finished since archiving started" + waiting
	}
	return metav1.ConditionTrue, ReasonArchiving, fmt.Sprintf("last archived %s at %s%s", st.LastArchivedWAL, st.LastArchivedTime.UTC().Format(time.RFC3339), waiting)
}

// roughly rounds a waiting time to the minute, so a condition's message
// does not change on every pass.
func roughly(d time.Duration) string {
	if d < time.Minute {
		return "under a minute"
	}
	return d.Truncate(time.Minute).String()
}
