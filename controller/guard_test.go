package controller

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

// countingRuntime counts the calls the reconcile core makes into a runtime;
// a refused spec must make none.
type countingRuntime struct{ ensured, deleted int }

func (r *countingRuntime) EnsureInstance(context.Context, *outpostv1.PostgresInstance) (InstanceObservation, error) {
	r.ensured++
	return InstanceObservation{Ready: true, Endpoint: "127.0.0.1:5432"}, nil
}

func (r *countingRuntime) DeleteInstance(context.Context, *outpostv1.PostgresInstance) error {
	r.deleted++
	return nil
}

func guardedInstance() *outpostv1.PostgresInstance {
	return &outpostv1.PostgresInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "main", Namespace: "default", Generation: 1},
		Spec: outpostv1.PostgresInstanceSpec{
			Resources:  outpostv1.InstanceResources{CPU: resource.MustParse("1"), Memory: resource.MustParse("1Gi")},
			Storage:    outpostv1.InstanceStorage{Size: resource.MustParse("1Gi")},
			Parameters: map[string]string{"work_mem": "8MB"},
		},
	}
}

// A spec that slipped past admission (an old CRD, a hand-edited object in
// etcd) is refused by reconcile before the runtime sees it, and the Ready
// condition names the field.
func TestReconcileRefusesWhatAdmissionShouldHaveRefusedNamingTheField(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*outpostv1.PostgresInstanceSpec)
		field string
	}{
		{"preload library", func(s *outpostv1.PostgresInstanceSpec) { s.Parameters["shared_preload_libraries"] = "/tmp/evil.so" }, "spec.parameters.shared_preload_libraries"},
		{"library path", func(s *outpostv1.PostgresInstanceSpec) { s.Parameters["dynamic_library_path"] = "/tmp" }, "spec.parameters.dynamic_library_path"},
		{"session preload in capitals", func(s *outpostv1.PostgresInstanceSpec) { s.Parameters["Session_Preload_Libraries"] = "x" }, "spec.parameters.Session_Preload_Libraries"},
		{"log directory", func(s *outpostv1.PostgresInstanceSpec) { s.Parameters["log_directory"] = "/etc" }, "spec.parameters.log_directory"},
		{"logging collector", func(s *outpostv1.PostgresInstanceSpec) { s.Parameters["logging_collector"] = "on" }, "spec.parameters.logging_collector"},
		{"pid file", func(s *outpostv1.PostgresInstanceSpec) { s.Parameters["external_pid_file"] = "/etc/passwd" }, "spec.parameters.external_pid_file"},
		{"traversing object store", func(s *outpostv1.PostgresInstanceSpec) {
			s.Backup = &outpostv1.BackupPolicy{ObjectStore: outpostv1.LocalObjectReference{Name: "../../etc"}, Retention: outpostv1.RetentionPolicy{RecoveryWindow: "7d"}}
		}, "spec.backup.objectStore.name"},
		{"traversing key secret", func(s *outpostv1.PostgresInstanceSpec) {
			s.Backup = &outpostv1.BackupPolicy{ObjectStore: outpostv1.LocalObjectReference{Name: "minio"}, Retention: outpostv1.RetentionPolicy{RecoveryWindow: "7d"},
				Encryption: &outpostv1.BackupEncryption{KeySecret: outpostv1.LocalObjectReference{Name: "../../../root"}}}
		}, "spec.backup.encryption.keySecret.name"},
		{"traversing recovery source", func(s *outpostv1.PostgresInstanceSpec) {
			s.Bootstrap.Recovery = &outpostv1.RecoveryBootstrap{Source: "../x", ObjectStore: outpostv1.LocalObjectReference{Name: "minio"}}
		}, "spec.bootstrap.recovery.source"},
		{"traversing backup ID", func(s *outpostv1.PostgresInstanceSpec) {
			s.Bootstrap.Recovery = &outpostv1.RecoveryBootstrap{Source: "old", BackupID: "../../x", ObjectStore: outpostv1.LocalObjectReference{Name: "minio"}}
		}, "spec.bootstrap.recovery.backupID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := &countingRuntime{}
			r := &InstanceReconciler{Runtime: rt, Events: &events{}}
			inst := guardedInstance()
			tc.edit(&inst.Spec)
			r.Reconcile(context.Background(), inst)
			if rt.ensured != 0 {
				t.Errorf("the runtime was asked to run the refused spec")
			}
			ready := meta.FindStatusCondition(inst.Status.Conditions, outpostv1.ConditionReady)
			if ready == nil || ready.Reason != ReasonInvalidSpec || !strings.HasPrefix(ready.Message, tc.field+": ") {
				t.Errorf("Ready = %+v, want InvalidSpec naming %s", ready, tc.field)
			}
		})
	}

	// The control: the same instance without the bad edit reaches the runtime.
	rt := &countingRuntime{}
	inst := guardedInstance()
	(&InstanceReconciler{Runtime: rt, Events: &events{}}).Reconcile(context.Background(), inst)
	if rt.ensured != 1 || inst.Status.Phase != outpostv1.InstanceRunning {
		t.Errorf("a valid spec: runtime called %d times, phase %s", rt.ensured, inst.Status.Phase)
	}
}

// The instance's status says whether its index builds are serial, from the
// pgvector version the runtime saw.
func TestInstanceStatusSaysWhetherIndexBuildsAreSerial(t *testing.T) {
	for _, tc := range []struct {
		version string
		status  metav1.ConditionStatus
		reason  string
	}{{"0.8.0", metav1.ConditionFalse, ReasonPgvectorTooOld}, {"0.8.1", metav1.ConditionFalse, ReasonPgvectorTooOld}, {"0.8.2", metav1.ConditionTrue, ReasonPgvectorSafe}, {"0.8.7", metav1.ConditionTrue, ReasonPgvectorSafe}} {
		rt := &versionRuntime{version: tc.version}
		inst := guardedInstance()
		(&InstanceReconciler{Runtime: rt, Events: &events{}}).Reconcile(context.Background(), inst)
		c := meta.FindStatusCondition(inst.Status.Conditions, ConditionParallelIndexBuilds)
		if c == nil || c.Status != tc.status || c.Reason != tc.reason || !strings.Contains(c.Message, "pgvector "+tc.version) {
			t.Errorf("pgvector %s: condition %+v, want %s %s", tc.version, c, tc.status, tc.reason)
		}
		if tc.status == metav1.ConditionFalse && !strings.Contains(c.Message, "max_parallel_maintenance_workers = 0") {
			t.Errorf("pgvector %s: the condition does not say the guard is on: %q", tc.version, c.Message)
		}
	}
}

// versionRuntime runs every instance and reports a pgvector version.
type versionRuntime struct {
	countingRuntime
	version string
}

func (r *versionRuntime) EnsureInstance(context.Context, *outpostv1.PostgresInstance) (InstanceObservation, error) {
	return InstanceObservation{Ready: true, Endpoint: "127.0.0.1:5432", PgvectorVersion: r.version}, nil
}
