package singlehost

import (
	"testing"
	"time"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

// TestRecoveryInstance checks the spec `outpost backup restore` writes: the
// source's spec with a recovery bootstrap, and of the source's backup
// policy only what reading an encrypted source's backups needs.
func TestRecoveryInstance(t *testing.T) {
	src := &outpostv1.PostgresInstance{}
	src.Name, src.Namespace = "src", "team"
	src.Spec.Backup = &outpostv1.BackupPolicy{ObjectStore: outpostv1.LocalObjectReference{Name: "s3"}}
	at := time.Date(2026, 11, 21, 20, 0, 0, 0, time.UTC)

	inst := recoveryInstance(src, RestoreOptions{Namespace: "team", Source: "src", To: "copy", BackupID: "b1", TargetTime: at})
	if inst.Kind != "PostgresInstance" || inst.APIVersion != outpostv1.GroupVersion.String() || inst.Name != "copy" || inst.Namespace != "team" {
		t.Errorf("wrote %s %s %s/%s", inst.APIVersion, inst.Kind, inst.Namespace, inst.Name)
	}
	rec := inst.Spec.Bootstrap.Recovery
	if rec == nil || rec.Source != "src" || rec.ObjectStore.Name != "s3" || rec.BackupID != "b1" || rec.TargetTime == nil || !rec.TargetTime.Time.Equal(at) {
		t.Errorf("recovery %+v", rec)
	}
	if inst.Spec.Backup != nil {
		t.Errorf("an unencrypted source's backup policy was copied: %+v", inst.Spec.Backup)
	}
	if src.Spec.Bootstrap.Recovery != nil {
		t.Error("the source's spec was changed")
	}

	src.Spec.Backup.Encryption = &outpostv1.BackupEncryption{}
	inst = recoveryInstance(src, RestoreOptions{Namespace: "team", Source: "src", To: "copy"})
	if inst.Spec.Backup == nil || inst.Spec.Backup.Encryption == nil || inst.Spec.Backup.ObjectStore.Name != "s3" {
		t.Errorf("an encrypted source's key was not kept: %+v", inst.Spec.Backup)
	}
	if inst.Spec.Bootstrap.Recovery.TargetTime != nil {
		t.Error("no target time became one")
	}
}
