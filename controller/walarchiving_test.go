package controller

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/archiving"
	"github.com/outpostdata/outpost/test/harness"
)

// loggedEvents keeps every event with its type and message.
type loggedEvents struct {
	mu  sync.Mutex
	all []string // "Type Reason: message"
}

func (e *loggedEvents) Event(_ runtime.Object, eventType, reason, msg string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, eventType+" "+reason+": "+msg)
}

func (e *loggedEvents) find(prefix string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.all {
		if strings.HasPrefix(ev, prefix) {
			return ev
		}
	}
	return ""
}

// archiverRuntime is a ready server whose archiver reports st.
type archiverRuntime struct{ st *archiving.Status }

func (a *archiverRuntime) EnsureInstance(context.Context, *outpostv1.PostgresInstance) (InstanceObservation, error) {
	return InstanceObservation{Ready: true, Endpoint: "127.0.0.1:5432", Archiving: a.st}, nil
}
func (a *archiverRuntime) DeleteInstance(context.Context, *outpostv1.PostgresInstance) error {
	return nil
}

func TestWALArchivingConditionNamesTheFailingSegmentAndRecovers(t *testing.T) {
	rt := &archiverRuntime{}
	ev := &loggedEvents{}
	r := &InstanceReconciler{Runtime: rt, Events: ev, Metrics: NewBackupMetrics()}
	inst := testInstance()
	inst.Spec.Backup = &outpostv1.BackupPolicy{ObjectStore: outpostv1.LocalObjectReference{Name: "s3"}}
	t0 := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)

	rt.st = &archiving.Status{ArchivedCount: 3, LastArchivedWAL: "000000010000000000000003", LastArchivedTime: t0}
	r.Reconcile(context.Background(), inst)
	c := meta.FindStatusCondition(inst.Status.Conditions, outpostv1.ConditionWALArchiving)
	if c == nil || c.Status != "True" || c.Reason != ReasonArchiving || !strings.Contains(c.Message, "000000010000000000000003") {
		t.Fatalf("healthy archiver: condition %+v", c)
	}

	rt.st = &archiving.Status{ArchivedCount: 3, LastArchivedWAL: "000000010000000000000003", LastArchivedTime: t0,
		FailedCount: 7, LastFailedWAL: "000000010000000000000004", LastFailedTime: t0.Add(time.Minute),
		Pending: 2, OldestPendingWAL: "000000010000000000000004", OldestPendingAge: 3 * time.Minute}
	r.Reconcile(context.Background(), inst)
	c = meta.FindStatusCondition(inst.Status.Conditions, outpostv1.ConditionWALArchiving)
	if c == nil || c.Status != "False" || c.Reason != ReasonArchiveFailing || !strings.Contains(c.Message, "000000010000000000000004") || !strings.Contains(c.Message, "7 failures") || !strings.Contains(c.Message, "3m0s") {
		t.Fatalf("failing archiver: condition %+v", c)
	}
	if e := ev.find("Warning " + ReasonArchiveFailing); !strings.Contains(e, "000000010000000000000004") {
		t.Fatalf("no Warning event naming the segment; events: %v", ev.all)
	}
	if v, ok := harness.MetricValue(t, r.Metrics, "outpost_wal_archive_failures_total"); !ok || v != 7 {
		t.Fatalf("outpost_wal_archive_failures_total = %v (found %v), want 7", v, ok)
	}
	if v, _ := harness.MetricValue(t, r.Metrics, "outpost_wal_archiving_ok"); v != 0 {
		t.Fatalf("outpost_wal_archiving_ok = %v while failing", v)
	}

	rt.st = &archiving.Status{ArchivedCount: 5, LastArchivedWAL: "000000010000000000000005", LastArchivedTime: t0.Add(2 * time.Minute),
		FailedCount: 7, LastFailedWAL: "000000010000000000000004", LastFailedTime: t0.Add(time.Minute)}
	r.Reconcile(context.Background(), inst)
	c = meta.FindStatusCondition(inst.Status.Conditions, outpostv1.ConditionWALArchiving)
	if c == nil || c.Status != "True" || ev.find("Normal ArchivingRecovered") == "" {
		t.Fatalf("recovered archiver: condition %+v, events %v", c, ev.all)
	}
}

func TestWALArchivingStalledWithoutFailureAfterFiveMinutes(t *testing.T) {
	rt := &archiverRuntime{st: &archiving.Status{Pending: 1, OldestPendingWAL: "000000010000000000000009", OldestPendingAge: 6 * time.Minute}}
	r := &InstanceReconciler{Runtime: rt, Events: &loggedEvents{}}
	inst := testInstance()
	inst.Spec.Backup = &outpostv1.BackupPolicy{ObjectStore: outpostv1.LocalObjectReference{Name: "s3"}}
	r.Reconcile(context.Background(), inst)
	c := meta.FindStatusCondition(inst.Status.Conditions, outpostv1.ConditionWALArchiving)
	if c == nil || c.Status != "False" || c.Reason != ReasonArchiveStalled || !strings.Contains(c.Message, "000000010000000000000009") {
		t.Fatalf("condition %+v", c)
	}
	// Control: the same wait under the threshold is no stall.
	rt.st.OldestPendingAge = 2 * time.Minute
	r.Reconcile(context.Background(), inst)
	if c := meta.FindStatusCondition(inst.Status.Conditions, outpostv1.ConditionWALArchiving); c.Status != "True" {
		t.Fatalf("a two-minute wait: condition %+v", c)
	}
}

func TestArchiveSettingDriftTurnsWALArchivingFalseNamingTheSetting(t *testing.T) {
	drift := []archiving.Drift{{Setting: "archive_command", Found: "cp %p /tmp/%f", Managed: "/bin/true", SourceFile: "/data/postgresql.auto.conf"}}
	rt := &archiverRuntime{st: &archiving.Status{Drift: drift}}
	ev := &loggedEvents{}
	r := &InstanceReconciler{Runtime: rt, Events: ev}
	// Without spec.backup, too: the idle archive_command is Outpost's.
	inst := testInstance()
	r.Reconcile(context.Background(), inst)
	c := meta.FindStatusCondition(inst.Status.Conditions, outpostv1.ConditionWALArchiving)
	if c == nil || c.Status != "False" || c.Reason != ReasonSettingDrift || !strings.Contains(c.Message, "archive_command") || !strings.Contains(c.Message, "postgresql.auto.conf") {
		t.Fatalf("condition %+v", c)
	}
	if ev.find("Warning "+ReasonSettingDrift) == "" {
		t.Fatalf("no drift event: %v", ev.all)
	}
	// Once restored, an instance without spec.backup has nothing to report.
	rt.st = &archiving.Status{}
	r.Reconcile(context.Background(), inst)
	if c := meta.FindStatusCondition(inst.Status.Conditions, outpostv1.ConditionWALArchiving); c != nil {
		t.Fatalf("no backup, no drift: condition %+v", c)
	}
}

func TestCheckDriftComparesEffectiveWithManagedSettings(t *testing.T) {
	st := &archiving.Status{Settings: map[string]archiving.Setting{
		"archive_command": {Value: "/bin/true"},
		"archive_library": {Value: ""},
		"restore_command": {Value: "cp /elsewhere/%f %p", SourceFile: "/d/postgresql.auto.conf"},
	}}
	got := archiving.CheckDrift(st, archiving.IdleSettings())
	if len(got) != 1 || got[0].Setting != "restore_command" || got[0].Managed != "" {
		t.Fatalf("drift = %+v, want restore_command only", got)
	}
	st.Settings["archive_command"] = archiving.Setting{Value: "cp %p /x/%f"}
	if got := archiving.CheckDrift(st, archiving.IdleSettings()); len(got) != 2 || got[0].Setting != "archive_command" {
		t.Fatalf("drift = %+v, want archive_command and restore_command", got)
	}
}

func testInstance() *outpostv1.PostgresInstance {
	inst := &outpostv1.PostgresInstance{}
	inst.Namespace, inst.Name, inst.Generation = "default", "db", 1
	inst.Spec.Version = 15
	inst.Spec.Resources.CPU = resource.MustParse("1")
	inst.Spec.Resources.Memory = resource.MustParse("1Gi")
	inst.Spec.Storage.Size = resource.MustParse("1Gi")
	return inst
}

func TestWALArchivingIsFalseWhenArchiveModeWasTurnedOff(t *testing.T) {
	// A superuser's ALTER SYSTEM SET archive_mode = off and a restart: no
	// failure, nothing pending, and nothing archived either.
	rt := &archiverRuntime{st: &archiving.Status{ArchiveMode: "off"}}
	r := &InstanceReconciler{Runtime: rt, Events: &loggedEvents{}}
	inst := testInstance()
	inst.Spec.Backup = &outpostv1.BackupPolicy{ObjectStore: outpostv1.LocalObjectReference{Name: "s3"}}
	r.Reconcile(context.Background(), inst)
	c := meta.FindStatusCondition(inst.Status.Conditions, outpostv1.ConditionWALArchiving)
	if c == nil || c.Status != "False" || c.Reason != ReasonArchiveOff || !strings.Contains(c.Message, "archive_mode") {
		t.Fatalf("archive_mode off: condition %+v", c)
	}
	// Control: the same status with archiving on is healthy.
	rt.st.ArchiveMode = "on"
	r.Reconcile(context.Background(), inst)
	if c := meta.FindStatusCondition(inst.Status.Conditions, outpostv1.ConditionWALArchiving); c == nil || c.Status != "True" {
		t.Fatalf("archive_mode on: condition %+v", c)
	}
}
