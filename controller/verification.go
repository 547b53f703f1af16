package controller

import (
	"context"
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

// RestoreVerifier proves, where an instance runs, that its newest backup
// is sound: with restore it restores the backup into a throw-away instance
// and checks it there; always it re-reads the backup against its
// checksums and checks the archived WAL it needs. The report names the
// backup even when the verification failed, if it got that far.
type RestoreVerifier interface {
	VerifyNewestBackup(ctx context.Context, inst *outpostv1.PostgresInstance, restore bool) (*VerificationReport, error)
}

// VerificationReport is what one verification found.
type VerificationReport struct {
	BackupID    string
	Restored    bool
	RecoveredTo time.Time
	// Summary says what was checked, for the status message.
	Summary string
}

// Reasons of the BackupVerified condition; they are what `kubectl get pgi`
// shows in its Verified column.
const (
	ReasonVerificationPassed  = "Passed"
	ReasonVerificationFailed  = "Failed"
	ReasonVerificationStale   = "Stale"
	ReasonVerificationPending = "Pending"
	ReasonVerificationRunning = "Running"
	// ReasonVerificationUnsupported: this controller's runtime cannot
	// restore into a throw-away server.
	ReasonVerificationUnsupported = "Unsupported"
)

// verificationTimeout bounds one verification, a restore of the whole
// instance included.
const verificationTimeout = 6 * time.Hour

type verifyJob struct {
	// slot is the schedule slot the job runs for.
	slot   time.Time
	done   chan struct{}
	result outpostv1.VerificationStatus
	// recorded is set once the result went into a status with its event;
	// the job is forgotten only when a later pass reads it back, so a lost
	// status write does not lose the result.
	recorded bool
}

func (j *verifyJob) finished() bool {
	select {
	case <-j.done:
		return true
	default:
		return false
	}
}

// observeVerification runs spec.backup.verification on inst; r.mu is
// held. A due verification starts in the background; a finished one is
// written into status.lastVerification with an event and metrics; the
// BackupVerified condition says Passed, Failed, Stale (a scheduled run
// was missed), Running or Pending (none ran yet).
//
// The schedule is level-based like the backup schedules (see Schedule):
// the slot last started is status.backups.lastVerificationScheduleTime,
// and the newest slot due after it starts, once, however many were missed
// while no controller ran. The first sight of a schedule without a
// recorded slot (or, from before that field, a lastVerification) records
// the current time and starts nothing. A verification that a controller
// restart cut short is not run again, as a Backup cut short is not: its
// slot counts as taken, lastVerification keeps the run before, and the
// next slot runs as usual.
func (r *BackupReconciler) observeVerification(inst *outpostv1.PostgresInstance) {
	if inst.Spec.Backup == nil || inst.Spec.Backup.Verification == nil {
		meta.RemoveStatusCondition(&inst.Status.Conditions, outpostv1.ConditionBackupVerified)
		return
	}
	if r.Verifier == nil {
		// Said, not ignored: a schedule that never runs must not look
		// like one that passes.
		r.setVerified(inst, metav1.ConditionUnknown, ReasonVerificationUnsupported,
			"scheduled verification runs where the local runtime runs instances (a single host, or --runtime local); here run `outpost backup verify --restore`")
		return
	}
	pol := inst.Spec.Backup.Verification
	key := inst.Namespace + "/" + inst.Name
	sched, err := cronParser.Parse(pol.Schedule)
	if err != nil {
		r.setVerified(inst, metav1.ConditionFalse, ReasonVerificationFailed, fmt.Sprintf("spec.backup.verification.schedule %q: %v", pol.Schedule, err))
		return
	}
	now := r.now()
	job := r.verifying[key]
	running := job != nil && !job.finished()
	if job != nil && !running {
		switch lv := inst.Status.LastVerification; {
		case lv != nil && !lv.Time.Time.Before(job.result.Time.Time):
			delete(r.verifying, key) // the status holds it
		case !job.recorded:
			r.recordVerification(inst, job.result)
			job.recorded = true
		default:
			res := job.result
			inst.Status.LastVerification = &res
		}
	}
	if inst.Status.Backups == nil {
		inst.Status.Backups = &outpostv1.BackupScheduleStatus{}
	}
	st := inst.Status.Backups
	// The slot of a job this process ran stays taken even if the write
	// that recorded it was lost, so it never runs twice.
	if job != nil && (st.LastVerificationScheduleTime == nil || st.LastVerificationScheduleTime.Time.Before(job.slot)) {
		at := metav1.NewTime(job.slot)
		st.LastVerificationScheduleTime = &at
	}
	lv := inst.Status.LastVerification
	switch {
	case st.LastVerificationScheduleTime == nil && lv != nil:
		slot := lv.Time
		st.LastVerificationScheduleTime = &slot
	case st.LastVerificationScheduleTime == nil, r.clockWentBack(inst, st.LastVerificationScheduleTime, now, "the verification schedule"):
		anchor := metav1.NewTime(now.Truncate(time.Second))
		st.LastVerificationScheduleTime = &anchor
	}
	last := st.LastVerificationScheduleTime.Time
	if slot, due := DueSlot(sched, last, now); due && !running && inst.Status.Phase == outpostv1.InstanceRunning {
		at := metav1.NewTime(slot)
		st.LastVerificationScheduleTime = &at
		r.startVerification(key, inst.DeepCopy(), pol.Restore == nil || *pol.Restore, slot, now)
		running = true
	}
	r.setVerificationCondition(inst, sched, now, running)
}

// startVerification runs one verification in the background; r.mu is held.
func (r *BackupReconciler) startVerification(key string, inst *outpostv1.PostgresInstance, restore bool, slot, start time.Time) {
	job := &verifyJob{slot: slot, done: make(chan struct{})}
	r.verifying[key] = job
	r.Events.Event(inst, "Normal", "VerificationStarted", "verifying the newest backup of "+inst.Name)
	go func() {
		defer close(job.done)
		ctx, cancel := context.WithTimeout(context.Background(), verificationTimeout)
		defer cancel()
		began := time.Now()
		rep, err := r.Verifier.VerifyNewestBackup(ctx, inst, restore)
		took := metav1.Duration{Duration: time.Since(began).Round(time.Millisecond)}
		res := outpostv1.VerificationStatus{Time: metav1.NewTime(start), Result: outpostv1.VerificationPassed, Duration: &took}
		if rep != nil {
			res.Backup, res.Restored, res.Message = rep.BackupID, rep.Restored, rep.Summary
			if !rep.RecoveredTo.IsZero() {
				t := metav1.NewTime(rep.RecoveredTo)
				res.RecoveredTo = &t
			}
		}
		if err != nil {
			res.Result, res.Message = outpostv1.VerificationFailed, err.Error()
		}
		job.result = res
	}()
}

// recordVerification writes a finished verification into the status.
func (r *BackupReconciler) recordVerification(inst *outpostv1.PostgresInstance, res outpostv1.VerificationStatus) {
	inst.Status.LastVerification = &res
	r.Metrics.observeVerification(inst.Namespace+"/"+inst.Name, res)
	if res.Result == outpostv1.VerificationPassed {
		r.Events.Event(inst, "Normal", "BackupVerified", fmt.Sprintf("backup %s verified: %s", res.Backup, res.Message))
		return
	}
	r.Events.Event(inst, "Warning", "BackupVerificationFailed", fmt.Sprintf("backup %s: %s", orNone(res.Backup), res.Message))
}

// setVerificationCondition judges status.lastVerification against the
// schedule.
func (r *BackupReconciler) setVerificationCondition(inst *outpostv1.PostgresInstance, sched cron.Schedule, now time.Time, running bool) {
	lv := inst.Status.LastVerification
	switch {
	case lv == nil && running:
		r.setVerified(inst, metav1.ConditionUnknown, ReasonVerificationRunning, "the first verification is running")
	case lv == nil:
		r.setVerified(inst, metav1.ConditionUnknown, ReasonVerificationPending, "the first verification is due at "+sched.Next(now).UTC().Format(time.RFC3339))
	case lv.Result == outpostv1.VerificationFailed:
		r.setVerified(inst, metav1.ConditionFalse, ReasonVerificationFailed, fmt.Sprintf("verification of backup %s at %s failed: %s", orNone(lv.Backup), lv.Time.UTC().Format(time.RFC3339), lv.Message))
	case !running && sched.Next(sched.Next(lv.Time.Time)).Before(now):
		r.setVerified(inst, metav1.ConditionFalse, ReasonVerificationStale, fmt.Sprintf("the last verification ran at %s and passed, but the one due at %s did not run",
			lv.Time.UTC().Format(time.RFC3339), sched.Next(lv.Time.Time).UTC().Format(time.RFC3339)))
	default:
		r.setVerified(inst, metav1.ConditionTrue, ReasonVerificationPassed, fmt.Sprintf("backup %s verified at %s: %s", lv.Backup, lv.Time.UTC().Format(time.RFC3339), lv.Message))
	}
}

func (r *BackupReconciler) setVerified(inst *outpostv1.PostgresInstance, status metav1.ConditionStatus, reason, msg string) {
	wasReason := ""
	if c := meta.FindStatusCondition(inst.Status.Conditions, outpostv1.ConditionBackupVerified); c != nil {
		wasReason = c.Reason
	}
	meta.SetStatusCondition(&inst.Status.Conditions, metav1.Condition{
		Type: outpostv1.ConditionBackupVerified, Status: status, Reason: reason, Message: msg, ObservedGeneration: inst.Generation,
	})
	if reason == ReasonVerificationStale && wasReason != reason {
		r.Events.Event(inst, "Warning", "VerificationStale", msg)
	}
}

func orNone(id string) string {
	if id == "" {
		return "(none found)"
	}
	return id
}
