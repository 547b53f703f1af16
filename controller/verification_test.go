package controller

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/test/harness"
)

// scriptedVerifier answers each verification with the next error (nil
// passes) and counts the runs.
type scriptedVerifier struct {
	mu   sync.Mutex
	errs []error
	runs int
}

func (v *scriptedVerifier) VerifyNewestBackup(_ context.Context, _ *outpostv1.PostgresInstance, restore bool) (*VerificationReport, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var err error
	if v.runs < len(v.errs) {
		err = v.errs[v.runs]
	}
	v.runs++
	return &VerificationReport{BackupID: "20261130T090000Z", Restored: restore, RecoveredTo: time.Date(2026, 11, 30, 8, 59, 0, 0, time.UTC), Summary: "1 database, 2 tables"}, err
}

// observeUntil passes over inst until its BackupVerified reason is want.
func observeUntil(t *testing.T, r *BackupReconciler, inst *outpostv1.PostgresInstance, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.ObserveInstance(inst)
		c := meta.FindStatusCondition(inst.Status.Conditions, outpostv1.ConditionBackupVerified)
		if c != nil && c.Reason == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("BackupVerified = %+v, want reason %s", c, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestScheduledVerificationRecordsPassFailAndStaleness(t *testing.T) {
	v := &scriptedVerifier{errs: []error{nil, errors.New("restore of backup 20261130T090000Z: WAL segment 000000010000000000000005 is damaged")}}
	ev := &loggedEvents{}
	now := time.Date(2026, 11, 30, 9, 0, 30, 0, time.UTC)
	r := &BackupReconciler{Verifier: v, Events: ev, Metrics: NewBackupMetrics(), Now: func() time.Time { return now }}
	inst := testInstance()
	inst.Status.Phase = outpostv1.InstanceRunning
	inst.Spec.Backup = &outpostv1.BackupPolicy{Verification: &outpostv1.VerificationPolicy{Schedule: "*/10 * * * *"}}

	// The first sight only notes the time.
	observeUntil(t, r, inst, ReasonVerificationPending)
	if v.runs != 0 {
		t.Fatalf("a verification ran at the first sight of the instance")
	}

	now = now.Add(10 * time.Minute)
	observeUntil(t, r, inst, ReasonVerificationPassed)
	lv := inst.Status.LastVerification
	if lv == nil || lv.Result != outpostv1.VerificationPassed || lv.Backup != "20261130T090000Z" || !lv.Restored || lv.RecoveredTo == nil || lv.Duration == nil || !lv.Time.Time.Equal(now) {
		t.Fatalf("lastVerification after a pass: %+v", lv)
	}
	if ev.find("Normal BackupVerified") == "" {
		t.Fatalf("no BackupVerified event: %v", ev.all)
	}
	if got, _ := harness.MetricValue(t, r.Metrics, "outpost_backup_verification_ok"); got != 1 {
		t.Fatalf("outpost_backup_verification_ok = %v after a pass", got)
	}
	// Not due again yet: no second run.
	r.ObserveInstance(inst)
	if v.runs != 1 {
		t.Fatalf("%d runs before the next scheduled time", v.runs)
	}

	now = now.Add(10 * time.Minute)
	observeUntil(t, r, inst, ReasonVerificationFailed)
	c := meta.FindStatusCondition(inst.Status.Conditions, outpostv1.ConditionBackupVerified)
	if c.Status != "False" || !strings.Contains(c.Message, "000000010000000000000005") || inst.Status.LastVerification.Result != outpostv1.VerificationFailed {
		t.Fatalf("after a failed run: condition %+v, lastVerification %+v", c, inst.Status.LastVerification)
	}
	if e := ev.find("Warning BackupVerificationFailed"); !strings.Contains(e, "damaged") {
		t.Fatalf("no Warning event saying why: %v", ev.all)
	}
	if got, _ := harness.MetricValue(t, r.Metrics, "outpost_backup_verification_ok"); got != 0 {
		t.Fatalf("outpost_backup_verification_ok = %v after a failure", got)
	}

	// A third run passes; then the instance stops running, runs are
	// missed, and the pass turns stale.
	now = now.Add(10 * time.Minute)
	observeUntil(t, r, inst, ReasonVerificationPassed)
	inst.Status.Phase = outpostv1.InstanceProvisioning
	now = now.Add(25 * time.Minute)
	observeUntil(t, r, inst, ReasonVerificationStale)
	if ev.find("Warning VerificationStale") == "" {
		t.Fatalf("no stale event: %v", ev.all)
	}
	if v.runs != 3 {
		t.Fatalf("%d runs, want 3", v.runs)
	}
}

func TestVerificationScheduleIsCheckedNamingTheField(t *testing.T) {
	spec := &outpostv1.PostgresInstanceSpec{Backup: &outpostv1.BackupPolicy{Verification: &outpostv1.VerificationPolicy{Schedule: "0 25 * * *"}}}
	if err := checkBackupSpec(spec); err == nil || !strings.Contains(err.Error(), "spec.backup.verification.schedule") {
		t.Fatalf("guard: %v", err)
	}
}

func TestVerificationWithoutAVerifierSaysSoInsteadOfPassing(t *testing.T) {
	r := &BackupReconciler{Events: &loggedEvents{}}
	inst := testInstance()
	inst.Status.Phase = outpostv1.InstanceRunning
	inst.Spec.Backup = &outpostv1.BackupPolicy{Verification: &outpostv1.VerificationPolicy{Schedule: "@daily"}}
	r.ObserveInstance(inst)
	c := meta.FindStatusCondition(inst.Status.Conditions, outpostv1.ConditionBackupVerified)
	if c == nil || c.Status != "Unknown" || c.Reason != ReasonVerificationUnsupported {
		t.Fatalf("BackupVerified without a verifier: %+v", c)
	}
}

func TestVerificationScheduleSurvivesRestartsThroughTheStatus(t *testing.T) {
	v := &scriptedVerifier{}
	now := time.Date(2026, 11, 30, 9, 0, 30, 0, time.UTC)
	// restarted is a controller started afresh, with nothing in memory.
	restarted := func() *BackupReconciler {
		return &BackupReconciler{Verifier: v, Events: &loggedEvents{}, Metrics: NewBackupMetrics(), Now: func() time.Time { return now }}
	}
	inst := testInstance()
	inst.Status.Phase = outpostv1.InstanceRunning
	inst.Spec.Backup = &outpostv1.BackupPolicy{Verification: &outpostv1.VerificationPolicy{Schedule: "*/10 * * * *"}}

	// The first sight records where the schedule starts in the status, so
	// restarts more often than the schedule do not put it off for ever.
	restarted().ObserveInstance(inst)
	for range 2 {
		now = now.Add(4 * time.Minute)
		restarted().ObserveInstance(inst)
	}
	v.wait(t, 0)
	now = now.Add(4 * time.Minute)
	restarted().ObserveInstance(inst)
	if v.wait(t, 1); inst.Status.Backups.LastVerificationScheduleTime == nil || !inst.Status.Backups.LastVerificationScheduleTime.Time.Equal(time.Date(2026, 11, 30, 9, 10, 0, 0, time.UTC)) {
		t.Fatalf("status.backups after the 09:10 slot: %+v", inst.Status.Backups)
	}
	// A controller down from 09:12 to 09:55 runs the newest missed slot
	// once, and restarts within it run nothing.
	now = time.Date(2026, 11, 30, 9, 55, 0, 0, time.UTC)
	for range 3 {
		restarted().ObserveInstance(inst)
		now = now.Add(time.Minute)
	}
	v.wait(t, 2)
	if got := inst.Status.Backups.LastVerificationScheduleTime.Time; !got.Equal(time.Date(2026, 11, 30, 9, 50, 0, 0, time.UTC)) {
		t.Fatalf("lastVerificationScheduleTime %v after the restart, want the newest missed slot 09:50", got)
	}
}

// wait waits until n verifications have run, and fails on more.
func (v *scriptedVerifier) wait(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		v.mu.Lock()
		runs := v.runs
		v.mu.Unlock()
		if runs > n {
			t.Fatalf("%d verifications, want %d", runs, n)
		}
		if runs == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d verifications, want %d", runs, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Every status write of the passes around a verification is lost (a
// conflict, controldb briefly away): each pass starts again from the status
// as it was stored. The verification still runs once for its slot, and its
// result is given to every pass until one reads it back from the status.
func TestVerificationSurvivesLostStatusWrites(t *testing.T) {
	v := &scriptedVerifier{}
	now := time.Date(2026, 11, 30, 9, 0, 30, 0, time.UTC)
	r := &BackupReconciler{Verifier: v, Events: &loggedEvents{}, Metrics: NewBackupMetrics(), Now: func() time.Time { return now }}
	stored := testInstance()
	stored.Status.Phase = outpostv1.InstanceRunning
	stored.Spec.Backup = &outpostv1.BackupPolicy{Verification: &outpostv1.VerificationPolicy{Schedule: "*/10 * * * *"}}
	r.ObserveInstance(stored) // the first sight's anchor is written
	now = now.Add(10 * time.Minute)

	var seen *outpostv1.PostgresInstance
	for range 50 {
		seen = stored.DeepCopy()
		r.ObserveInstance(seen) // and its status is never written
		if seen.Status.LastVerification != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	v.wait(t, 1)
	if seen.Status.LastVerification == nil || seen.Status.Backups.LastVerificationScheduleTime == nil ||
		!seen.Status.Backups.LastVerificationScheduleTime.Time.Equal(time.Date(2026, 11, 30, 9, 10, 0, 0, time.UTC)) {
		t.Fatalf("status after the verification ran, its writes lost: %+v %+v", seen.Status.LastVerification, seen.Status.Backups)
	}
	again := stored.DeepCopy()
	r.ObserveInstance(again)
	v.wait(t, 1)
	if again.Status.LastVerification == nil || again.Status.LastVerification.Result != outpostv1.VerificationPassed {
		t.Fatalf("a later pass on the stored status lost the result: %+v", again.Status.LastVerification)
	}
	// Once a write lands, the job is forgotten and the next slot runs.
	stored = again
	r.ObserveInstance(stored)
	now = now.Add(10 * time.Minute)
	r.ObserveInstance(stored)
	v.wait(t, 2)
}
