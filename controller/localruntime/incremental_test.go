package localruntime_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/test/harness"
)

// runScheduled passes over inst until its schedule asks for a Backup, then
// runs that Backup to the end.
func runScheduled(t *testing.T, r *controller.BackupReconciler, inst *outpostv1.PostgresInstance) *outpostv1.Backup {
	t.Helper()
	b := r.Schedule(inst)
	if b == nil {
		t.Fatal("no Backup was scheduled")
	}
	b.Generation = 1
	deadline := time.Now().Add(3 * time.Minute)
	for r.Reconcile(context.Background(), b); b.Status.Phase != outpostv1.BackupCompleted; r.Reconcile(context.Background(), b) {
		if b.Status.Phase == outpostv1.BackupFailed || time.Now().After(deadline) {
			t.Fatalf("scheduled Backup %s: %+v", b.Name, b.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return b
}

// A weekly full schedule and a daily incremental one: the full backup
// comes first, each incremental goes on top of the newest backup, and the
// scheduled verification restores the newest through its chain.
func TestScheduledIncrementalsGoOnTopOfTheNewestBackupAndVerifyThroughTheChain(t *testing.T) {
	s := newSite(t, true)
	inst := newInstance("db")
	withBackup(inst)
	inst.Spec.Backup.Schedule = "0 3 * * 0"
	inst.Spec.Backup.IncrementalSchedule = "0 3 * * *"
	s.ready(t, inst)
	conn := s.connect(t, inst)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, 'zero' FROM generate_series(1, 20000) g"); err != nil {
		t.Fatal(err)
	}
	// Sunday 2026-11-29, just before 03:00.
	clock := harness.NewClock("2026-11-29T02:59:30Z")
	r := &controller.BackupReconciler{Runner: s.rt, Verifier: s.rt, Events: s.events, Metrics: controller.NewBackupMetrics(), Now: clock.Now,
		Instances: func(context.Context, string, string) (*outpostv1.PostgresInstance, error) { return inst, nil }}
	if b := r.Schedule(inst); b != nil {
		t.Fatalf("the first pass created Backup %s", b.Name)
	}
	// Both schedules are due on Sunday at 03:00: one full backup.
	clock.Add(time.Minute)
	full := runScheduled(t, r, inst)
	if full.Spec.Type != outpostv1.BackupFull || full.Status.Type != outpostv1.BackupFull || full.Status.Parent != "" {
		t.Fatalf("Sunday's backup %s: spec type %q, status type %q parent %q; want a full backup", full.Name, full.Spec.Type, full.Status.Type, full.Status.Parent)
	}
	if again := r.Schedule(inst); again != nil {
		t.Fatalf("the incremental schedule, due at the same time, also created %s", again.Name)
	}
	parent := full.Status.BackupID
	for day, update := range []string{"UPDATE items SET v = 'monday' WHERE id % 10 = 0", "UPDATE items SET v = 'tuesday' WHERE id % 7 = 0"} {
		if _, err := conn.Exec(ctx, update); err != nil {
			t.Fatal(err)
		}
		clock.Add(24 * time.Hour)
		inc := runScheduled(t, r, inst)
		if inc.Spec.Type != outpostv1.BackupIncremental || inc.Status.Type != outpostv1.BackupIncremental || inc.Status.Parent != parent {
			t.Fatalf("day %d's backup %s: spec type %q, status type %q, parent %q; want an incremental on top of %s", day+1, inc.Name, inc.Spec.Type, inc.Status.Type, inc.Status.Parent, parent)
		}
		if inc.Status.SizeBytes*2 > full.Status.SizeBytes {
			t.Fatalf("incremental %s stored %d bytes, the full backup %d", inc.Status.BackupID, inc.Status.SizeBytes, full.Status.SizeBytes)
		}
		parent = inc.Status.BackupID
	}
	switchWAL(t, conn)

	// The scheduled verification restores the newest backup, the second
	// incremental, which only its chain can rebuild.
	inst.Spec.Backup.Verification = &outpostv1.VerificationPolicy{Schedule: "*/10 * * * *"}
	r.ObserveInstance(inst) // the first sight only notes the time
	lv := verifyOnce(t, r, clock, inst)
	if lv.Result != outpostv1.VerificationPassed || lv.Backup != parent || !lv.Restored {
		t.Fatalf("verification of incremental %s: %+v", parent, lv)
	}
	t.Logf("verification of %s: %s", lv.Backup, lv.Message)
}

// A daily incremental schedule with nothing yet to go on top of (no full
// schedule, no backup): its first slot makes a full backup and says why,
// in the Backup's condition and a warning event; the next slot goes on top
// of it. A Backup a person asks to be incremental in the same state fails.
func TestScheduledIncrementalWithNothingToGoOnTopOfMakesAFullBackup(t *testing.T) {
	s := newSite(t, true)
	inst := newInstance("db")
	withBackup(inst)
	inst.Spec.Backup.IncrementalSchedule = "0 3 * * *"
	s.ready(t, inst)
	clock := harness.NewClock("2026-11-30T02:59:30Z")
	r := &controller.BackupReconciler{Runner: s.rt, Events: s.events, Metrics: controller.NewBackupMetrics(), Now: clock.Now,
		Instances: func(context.Context, string, string) (*outpostv1.PostgresInstance, error) { return inst, nil }}

	asked := &outpostv1.Backup{Spec: outpostv1.BackupSpec{Instance: outpostv1.LocalObjectReference{Name: "db"}, Type: outpostv1.BackupIncremental}}
	asked.Namespace, asked.Name, asked.Generation = inst.Namespace, "asked", 1
	deadline := time.Now().Add(3 * time.Minute)
	for r.Reconcile(context.Background(), asked); asked.Status.Phase != outpostv1.BackupFailed; r.Reconcile(context.Background(), asked) {
		if asked.Status.Phase == outpostv1.BackupCompleted || time.Now().After(deadline) {
			t.Fatalf("an incremental Backup asked for with no backup to go on top of: %+v; want it Failed", asked.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(asked.Status.Error, "make a full backup first") {
		t.Fatalf("the failed incremental Backup says %q; want it to say a full backup is needed first", asked.Status.Error)
	}

	if b := r.Schedule(inst); b != nil {
		t.Fatalf("the first pass created Backup %s", b.Name)
	}
	clock.Add(time.Minute)
	first := runScheduled(t, r, inst)
	ready := meta.FindStatusCondition(first.Status.Conditions, outpostv1.ConditionReady)
	if first.Spec.Type != outpostv1.BackupIncremental || first.Status.Type != outpostv1.BackupFull || first.Status.Parent != "" ||
		ready == nil || !strings.Contains(ready.Message, "instead of an incremental one") || !strings.Contains(ready.Message, "make a full backup first") {
		t.Fatalf("the first scheduled incremental Backup %s: spec type %q, status type %q, parent %q, Ready %+v; want a full backup saying why",
			first.Name, first.Spec.Type, first.Status.Type, first.Status.Parent, ready)
	}
	if ev := s.events.find("Warning " + controller.ReasonFullInsteadOfIncremental); !strings.Contains(ev, first.Status.BackupID) {
		t.Fatalf("no %s warning naming %s; events: %v", controller.ReasonFullInsteadOfIncremental, first.Status.BackupID, s.events.all)
	}
	clock.Add(24 * time.Hour)
	next := runScheduled(t, r, inst)
	if next.Status.Type != outpostv1.BackupIncremental || next.Status.Parent != first.Status.BackupID {
		t.Fatalf("the next slot's Backup %s: status type %q, parent %q; want an incremental on top of %s", next.Name, next.Status.Type, next.Status.Parent, first.Status.BackupID)
	}
}
