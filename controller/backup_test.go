package controller

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

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
		t.Fatalf("the first pass after a start created Backup %s", b.Name)
	}
	now = now.Add(30 * time.Second)
	if b := r.Schedule(inst); b != nil {
		t.Fatalf("Backup %s created before one was due", b.Name)
	}
	now = now.Add(time.Minute)
	b := r.Schedule(inst)
	if b == nil || b.Spec.Instance.Name != "db" || b.Labels[LabelScheduledBy] != "db" || b.Name != "db-20261121-030030" {
		t.Fatalf("due schedule created %+v, want Backup db-20261121-030030 of db", b)
	}
	// Until the source has created it and it runs, no second one.
	now = now.Add(24 * time.Hour)
	if again := r.Schedule(inst); again != nil {
		t.Fatalf("a second Backup %s while %s waits", again.Name, b.Name)
	}
	b.Generation = 1
	r.Reconcile(context.Background(), b)
	if b.Status.Phase != outpostv1.BackupRunning {
		t.Fatalf("scheduled Backup: %+v", b.Status)
	}
	// While it runs, a due schedule creates nothing either.
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
	if r.Schedule(inst) == nil {
		t.Fatalf("no Backup when due after the last one completed")
	}
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
