package controller

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/outpostdata/outpost/backup"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

type events struct {
	mu      sync.Mutex
	reasons []string
}

func (e *events) Event(_ runtime.Object, _, reason, _ string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.reasons = append(e.reasons, reason)
}

// blockingRunner makes backups that finish when release is closed.
type blockingRunner struct {
	release chan struct{}
	mu      sync.Mutex
	running int
	maxRun  int
	calls   int
	fail    error
}

func (r *blockingRunner) RunBackup(ctx context.Context, inst *outpostv1.PostgresInstance, typ outpostv1.BackupType, onStart func(string)) (*backup.Manifest, string, error) {
	r.mu.Lock()
	r.running++
	r.calls++
	r.maxRun = max(r.maxRun, r.running)
	r.mu.Unlock()
	onStart("id-1")
	<-r.release
	r.mu.Lock()
	r.running--
	r.mu.Unlock()
	if r.fail != nil {
		return nil, "", r.fail
	}
	now := time.Now()
	return &backup.Manifest{ID: "id-1", StartLSN: "0/2000028", StopLSN: "0/2000100", StartTime: now, StopTime: now, StoredBytes: 42}, "bucket/default/db/base/id-1/", nil
}

func (r *blockingRunner) ApplyRetention(_ context.Context, _ *outpostv1.PostgresInstance, now time.Time) (*backup.RetentionResult, error) {
	return &backup.RetentionResult{Kept: []string{"id-1"}, FirstRecoverabilityPoint: now}, nil
}

func backupReconciler(r BackupRunner) *BackupReconciler {
	return &BackupReconciler{
		Runner: r,
		Events: &events{},
		Instances: func(_ context.Context, ns, name string) (*outpostv1.PostgresInstance, error) {
			if name != "db" {
				return nil, errors.New("no PostgresInstance " + name)
			}
			inst := &outpostv1.PostgresInstance{}
			inst.Namespace, inst.Name = ns, name
			inst.Spec.Backup = &outpostv1.BackupPolicy{ObjectStore: outpostv1.LocalObjectReference{Name: "s3"}}
			return inst, nil
		},
	}
}

func newBackup(name, instance string) *outpostv1.Backup {
	b := &outpostv1.Backup{}
	b.Namespace, b.Name, b.Generation = "default", name, 1
	b.Spec.Instance.Name = instance
	return b
}

func TestBackupRunsOncePerInstanceAtATimeAndRecordsItsResult(t *testing.T) {
	runner := &blockingRunner{release: make(chan struct{})}
	r := backupReconciler(runner)
	ctx := context.Background()
	first, second := newBackup("first", "db"), newBackup("second", "db")
	r.Reconcile(ctx, first)
	r.Reconcile(ctx, second)
	if first.Status.Phase != outpostv1.BackupRunning || second.Status.Phase != outpostv1.BackupPending {
		t.Fatalf("phases: first %s, second %s; want Running and Pending", first.Status.Phase, second.Status.Phase)
	}
	close(runner.release)
	deadline := time.Now().Add(5 * time.Second)
	for first.Status.Phase != outpostv1.BackupCompleted || second.Status.Phase != outpostv1.BackupCompleted {
		if time.Now().After(deadline) {
			t.Fatalf("phases: first %s, second %s; want both Completed", first.Status.Phase, second.Status.Phase)
		}
		r.Reconcile(ctx, first)
		r.Reconcile(ctx, second)
		time.Sleep(10 * time.Millisecond)
	}
	if runner.maxRun != 1 {
		t.Fatalf("%d backups of one instance ran at once", runner.maxRun)
	}
	if first.Status.BackupID != "id-1" || first.Status.StopLSN == "" || first.Status.SizeBytes != 42 || first.Status.StoppedAt == nil || first.Status.Location == "" {
		t.Fatalf("completed status: %+v", first.Status)
	}
}

func TestBackupLeftRunningByARestartedControllerIsFailedNotCompleted(t *testing.T) {
	r := backupReconciler(&blockingRunner{release: make(chan struct{})})
	b := newBackup("b", "db")
	b.Status.Phase = outpostv1.BackupRunning
	r.Reconcile(context.Background(), b)
	if b.Status.Phase != outpostv1.BackupFailed || !strings.Contains(b.Status.Error, "controller stopped during the backup") {
		t.Fatalf("status after restart: %+v", b.Status)
	}
}

func TestFailedBackupSaysWhy(t *testing.T) {
	runner := &blockingRunner{release: make(chan struct{}), fail: errors.New("object store http://x/b is unreachable")}
	close(runner.release)
	r := backupReconciler(runner)
	b := newBackup("b", "db")
	for i := 0; i < 100 && b.Status.Phase != outpostv1.BackupFailed; i++ {
		r.Reconcile(context.Background(), b)
		time.Sleep(10 * time.Millisecond)
	}
	if b.Status.Phase != outpostv1.BackupFailed || !strings.Contains(b.Status.Error, "unreachable") {
		t.Fatalf("status: %+v", b.Status)
	}
	missing := newBackup("m", "nope")
	r.Reconcile(context.Background(), missing)
	if missing.Status.Phase != outpostv1.BackupFailed || !strings.Contains(missing.Status.Error, "no PostgresInstance nope") {
		t.Fatalf("backup of a missing instance: %+v", missing.Status)
	}
}

func TestInvalidCronScheduleIsRejectedNamingTheField(t *testing.T) {
	for _, expr := range []string{"61 * * * *", "* * *", "@fortnightly", "0 3 * * mon-xyz"} {
		_, err := ParseSchedule(expr)
		if err == nil || !strings.Contains(err.Error(), "spec.backup.schedule") {
			t.Errorf("schedule %q: %v, want an error naming spec.backup.schedule", expr, err)
		}
	}
	for _, expr := range []string{"0 3 * * *", "30 0 3 * * *", "@daily", "@every 1h"} {
		if _, err := ParseSchedule(expr); err != nil {
			t.Errorf("schedule %q: %v", expr, err)
		}
	}
	spec := &outpostv1.PostgresInstanceSpec{Backup: &outpostv1.BackupPolicy{Schedule: "0 25 * * *"}}
	if err := checkBackupSpec(spec); err == nil || !strings.Contains(err.Error(), "spec.backup.schedule") {
		t.Errorf("guard: %v", err)
	}
}

func TestScheduleCreatesOneBackupWhenDueButNotAtStartup(t *testing.T) {
	runner := &blockingRunner{release: make(chan struct{})}
	r := backupReconciler(runner)
	now := time.Date(2026, 11, 21, 2, 59, 0, 0, time.UTC)
	r.Now = func() time.Time { return now }
	inst := &outpostv1.PostgresInstance{}
	inst.Namespace, inst.Name = "default", "db"
	inst.Status.Phase = outpostv1.InstanceRunning
	inst.Spec.Backup = &outpostv1.BackupPolicy{Schedule: "0 3 * * *"}
	if b := r.Schedule(inst); b != nil {
		t.Fatalf("the first pass over the schedule created Backup %s", b.Name)
	}
	if st := inst.Status.Backups; st == nil || st.LastScheduleTime == nil || !st.LastScheduleTime.Time.Equal(now) {
		t.Fatalf("the first pass did not record where the schedule starts: %+v", st)
	}
	now = now.Add(30 * time.Second)
	if b := r.Schedule(inst); b != nil {
		t.Fatalf("Backup %s created before one was due", b.Name)
	}
	now = now.Add(time.Minute)
	b := r.Schedule(inst)
	if b == nil || b.Spec.Instance.Name != "db" || b.Labels[LabelScheduledBy] != "db" || b.Name != "db-full-20261121t030000z" {
		t.Fatalf("due schedule created %+v, want Backup db-full-20261121t030000z of db", b)
	}
	if got := inst.Status.Backups.LastScheduleTime; !got.Time.Equal(time.Date(2026, 11, 21, 3, 0, 0, 0, time.UTC)) {
		t.Fatalf("lastScheduleTime %v, want the slot 03:00", got)
	}
	// A pass that sees the status from before the slot was taken names
	// the same Backup, which the source's create takes as done.
	stale := inst.DeepCopy()
	before := metav1.NewTime(time.Date(2026, 11, 21, 2, 59, 0, 0, time.UTC))
	stale.Status.Backups.LastScheduleTime = &before
	if again := r.Schedule(stale); again == nil || again.Name != b.Name {
		t.Fatalf("a pass with the status before the slot made %+v, want %s again", again, b.Name)
	}
	b.Generation = 1
	r.Reconcile(context.Background(), b)
	if b.Status.Phase != outpostv1.BackupRunning {
		t.Fatalf("scheduled Backup: %+v", b.Status)
	}
	// While it runs, a due slot makes nothing.
	now = now.Add(24 * time.Hour)
	if again := r.Schedule(inst); again != nil {
		t.Fatalf("a second Backup %s while %s runs", again.Name, b.Name)
	}
	close(runner.release)
	for i := 0; i < 500 && b.Status.Phase != outpostv1.BackupCompleted; i++ {
		time.Sleep(10 * time.Millisecond)
		r.Reconcile(context.Background(), b)
	}
	if b.Status.Phase != outpostv1.BackupCompleted {
		t.Fatalf("scheduled Backup did not complete: %+v", b.Status)
	}
	r.ObserveInstance(inst)
	if inst.Status.LastBackup != b.Name || inst.Status.LastBackupTime == nil || inst.Status.FirstRecoverabilityPoint == nil {
		t.Fatalf("instance status after the backup: %+v", inst.Status)
	}
	if next := r.Schedule(inst); next == nil || next.Name != "db-full-20261122t030000z" {
		t.Fatalf("after the last one completed the due slot made %+v, want db-full-20261122t030000z", next)
	}
}

// scheduleAfterRestart is what controllers started at now make of inst's
// schedules, given the status a previous one left: five in a row, each a
// fresh reconciler with nothing in memory, as after restarts, each seeing
// the status the one before wrote.
func scheduleAfterRestart(t *testing.T, inst *outpostv1.PostgresInstance, now time.Time) []*outpostv1.Backup {
	t.Helper()
	var made []*outpostv1.Backup
	for range 5 {
		r := backupReconciler(&blockingRunner{release: make(chan struct{})})
		r.Now = func() time.Time { return now }
		if b := r.Schedule(inst); b != nil {
			made = append(made, b)
		}
	}
	return made
}

func TestRestartAfterAMissedSlotRunsExactlyOneBackupNamedAfterTheSlot(t *testing.T) {
	inst := &outpostv1.PostgresInstance{}
	inst.Namespace, inst.Name = "default", "db"
	inst.Status.Phase = outpostv1.InstanceRunning
	inst.Spec.Backup = &outpostv1.BackupPolicy{Schedule: "0 2 * * *", IncrementalSchedule: "0 */6 * * *"}
	slot := func(day, hour int) *metav1.Time {
		t := metav1.NewTime(time.Date(2026, 11, day, hour, 0, 0, 0, time.UTC))
		return &t
	}
	// The last full slot taken was on the 27th, the last incremental one at
	// 18:00 on the 29th; the controller was down until 07:30 on the 30th,
	// missing three full slots and two incremental ones.
	inst.Status.Backups = &outpostv1.BackupScheduleStatus{LastScheduleTime: slot(27, 2), LastIncrementalScheduleTime: slot(29, 18)}
	made := scheduleAfterRestart(t, inst, time.Date(2026, 11, 30, 7, 30, 0, 0, time.UTC))
	if len(made) != 1 || made[0].Name != "db-full-20261130t020000z" || made[0].Spec.Type != outpostv1.BackupFull {
		t.Fatalf("restart after missed slots made %v, want only the full Backup of the newest slot, db-full-20261130t020000z", names(made))
	}
	// The full backup counts for the incremental slot due with it.
	if got := inst.Status.Backups; !got.LastScheduleTime.Equal(slot(30, 2)) || !got.LastIncrementalScheduleTime.Equal(slot(30, 6)) {
		t.Fatalf("status after the restart: %+v", got)
	}

	// Restarted again within the same slots: nothing, even many times.
	for _, at := range []time.Time{time.Date(2026, 11, 30, 7, 30, 5, 0, time.UTC), time.Date(2026, 11, 30, 11, 59, 59, 0, time.UTC)} {
		if made := scheduleAfterRestart(t, inst, at); len(made) != 0 {
			t.Fatalf("restart at %v within the slot taken made %v", at, names(made))
		}
	}
	// The next slot is not skipped: at 12:00 the incremental one is due.
	made = scheduleAfterRestart(t, inst, time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	if len(made) != 1 || made[0].Name != "db-incr-20261130t120000z" || made[0].Spec.Type != outpostv1.BackupIncremental {
		t.Fatalf("at the next incremental slot the restart made %v, want db-incr-20261130t120000z", names(made))
	}

	// A status write lost after the Backup was created: the restart makes
	// the very same name again, which the source's create takes as done.
	lost := inst.DeepCopy()
	lost.Status.Backups.LastIncrementalScheduleTime = slot(30, 6)
	again := scheduleAfterRestart(t, lost, time.Date(2026, 11, 30, 12, 0, 30, 0, time.UTC))
	if len(again) != 1 || again[0].Name != made[0].Name {
		t.Fatalf("after a lost status write the restart made %v, want %s again", names(again), made[0].Name)
	}
}

func TestDueSlotIsTheNewestSlotAfterTheLastOne(t *testing.T) {
	at := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		expr, last, now, want string
	}{
		{"0 2 * * *", "2026-11-29T02:00:00Z", "2026-11-30T01:59:59Z", ""},
		{"0 2 * * *", "2026-11-29T02:00:00Z", "2026-11-30T02:00:00Z", "2026-11-30T02:00:00Z"},
		{"0 2 * * *", "2025-01-01T00:00:00Z", "2026-11-30T12:00:00Z", "2026-11-30T02:00:00Z"},
		{"* * * * *", "2026-11-30T10:00:00Z", "2026-11-30T10:05:30Z", "2026-11-30T10:05:00Z"},
		{"*/20 * * * * *", "2026-11-30T10:00:00Z", "2026-11-30T10:00:19Z", ""},
		{"0 0 1 1 *", "2020-01-01T00:00:00Z", "2026-11-30T12:00:00Z", "2026-01-01T00:00:00Z"},
		// @every counts from the last slot taken, not from the clock.
		{"@every 10s", "2026-11-30T10:00:03Z", "2026-11-30T10:00:12Z", ""},
		{"@every 10s", "2026-11-30T10:00:03Z", "2026-11-30T10:01:02Z", "2026-11-30T10:00:53Z"},
	} {
		sched, err := ParseSchedule(c.expr)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := DueSlot(sched, at(c.last), at(c.now))
		if c.want == "" {
			if ok {
				t.Errorf("%s after %s at %s: slot %v, want none", c.expr, c.last, c.now, got)
			}
			continue
		}
		if !ok || !got.Equal(at(c.want)) {
			t.Errorf("%s after %s at %s: slot %v (%v), want %s", c.expr, c.last, c.now, got, ok, c.want)
		}
	}
}

func names(bs []*outpostv1.Backup) []string {
	var n []string
	for _, b := range bs {
		n = append(n, b.Name)
	}
	return n
}

// pruningRunner is a blockingRunner whose retention deleted backup "old".
type pruningRunner struct{ *blockingRunner }

func (pruningRunner) ApplyRetention(context.Context, *outpostv1.PostgresInstance, time.Time) (*backup.RetentionResult, error) {
	return &backup.RetentionResult{DeletedBackups: []string{"old"}, Kept: []string{"id-1"}}, nil
}

func TestScheduledBackupsWhoseBackupRetentionDeletedExpire(t *testing.T) {
	runner := &blockingRunner{release: make(chan struct{})}
	close(runner.release)
	r := backupReconciler(pruningRunner{runner})
	b := newBackup("new", "db")
	for i := 0; i < 500 && b.Status.Phase != outpostv1.BackupCompleted; i++ {
		r.Reconcile(context.Background(), b)
		time.Sleep(10 * time.Millisecond)
	}
	if b.Status.Phase != outpostv1.BackupCompleted {
		t.Fatalf("backup: %+v", b.Status)
	}
	old := func(scheduled bool, id string) *outpostv1.Backup {
		o := newBackup("db-old", "db")
		o.Status.Phase, o.Status.BackupID = outpostv1.BackupCompleted, id
		if scheduled {
			o.Labels = map[string]string{LabelScheduledBy: "db"}
		}
		return o
	}
	if !r.Expired(old(true, "old")) {
		t.Error("a scheduled Backup whose backup retention deleted did not expire")
	}
	if r.Expired(old(false, "old")) {
		t.Error("a Backup someone created expired")
	}
	if r.Expired(old(true, "id-1")) || r.Expired(b) {
		t.Error("a Backup whose backup is kept expired")
	}
}

// A slot recorded while the clock was a year ahead (an offline host that
// booted with a wrong date, then was corrected) does not stop the schedule
// until the clock catches up: it starts again from now, with a warning, and
// the next slot runs.
func TestASlotRecordedAheadOfTheClockStartsTheScheduleAgain(t *testing.T) {
	inst := &outpostv1.PostgresInstance{}
	inst.Namespace, inst.Name = "default", "db"
	inst.Status.Phase = outpostv1.InstanceRunning
	inst.Spec.Backup = &outpostv1.BackupPolicy{Schedule: "0 2 * * *"}
	ahead := metav1.NewTime(time.Date(2027, 11, 30, 2, 0, 0, 0, time.UTC))
	inst.Status.Backups = &outpostv1.BackupScheduleStatus{LastScheduleTime: &ahead}
	now := time.Date(2026, 11, 30, 7, 30, 0, 0, time.UTC)
	if made := scheduleAfterRestart(t, inst, now); len(made) != 0 {
		t.Fatalf("the pass that finds the clock set back made %v", names(made))
	}
	if got := inst.Status.Backups.LastScheduleTime.Time; !got.Equal(now) {
		t.Fatalf("lastScheduleTime %v, want the schedule started again at %v", got, now)
	}
	made := scheduleAfterRestart(t, inst, time.Date(2026, 12, 1, 2, 0, 10, 0, time.UTC))
	if len(made) != 1 || made[0].Name != "db-full-20261201t020000z" {
		t.Fatalf("the next slot after the clock was set back made %v, want db-full-20261201t020000z", names(made))
	}
}
