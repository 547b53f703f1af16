package dirsource

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

// A scheduled Backup's file says its type, and writing the Backup of a slot
// whose file is already there (a restart lost the status that recorded the
// slot) leaves that file as it is and is no error.
func TestScheduledBackupFileKeepsItsTypeAndIsWrittenOncePerSlot(t *testing.T) {
	dir := t.TempDir()
	c := New(dir, nil, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	b := &outpostv1.Backup{}
	b.APIVersion, b.Kind = outpostv1.GroupVersion.String(), "Backup"
	b.Namespace = "default"
	b.Name = controller.ScheduledBackupName("db", outpostv1.BackupIncremental, time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC))
	b.Labels = map[string]string{controller.LabelScheduledBy: "db"}
	b.Spec.Instance.Name, b.Spec.Type = "db", outpostv1.BackupIncremental
	if err := c.writeScheduledBackup(b); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "backup-db-incr-20261130t020000z.yaml")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var got outpostv1.Backup
	if err := yaml.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if got.Name != b.Name || got.Spec.Type != outpostv1.BackupIncremental || got.Spec.Instance.Name != "db" || got.Labels[controller.LabelScheduledBy] != "db" {
		t.Fatalf("scheduled Backup file:\n%s", data)
	}
	if err := os.WriteFile(file, append(data, "# edited\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.writeScheduledBackup(b); err != nil {
		t.Fatalf("the Backup of a slot whose file exists: %v", err)
	}
	if again, _ := os.ReadFile(file); string(again) != string(data)+"# edited\n" {
		t.Fatalf("the existing file was rewritten:\n%s", again)
	}
}

// Instances of the same name in two namespaces with the same schedule have
// scheduled Backups of the same name: each gets a file of its own, and a
// file holding another Backup is an error, never taken as this slot's.
func TestScheduledBackupsOfTwoNamespacesNeverShareAFile(t *testing.T) {
	dir := t.TempDir()
	c := New(dir, nil, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	slot := time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC)
	backupOf := func(ns string) *outpostv1.Backup {
		b := &outpostv1.Backup{}
		b.APIVersion, b.Kind = outpostv1.GroupVersion.String(), outpostv1.KindBackup
		b.Namespace, b.Name = ns, controller.ScheduledBackupName("db", outpostv1.BackupFull, slot)
		b.Labels = map[string]string{controller.LabelScheduledBy: "db"}
		b.Spec.Instance.Name, b.Spec.Type = "db", outpostv1.BackupFull
		return b
	}
	for _, ns := range []string{"default", "prod"} {
		if err := c.writeScheduledBackup(backupOf(ns)); err != nil {
			t.Fatalf("namespace %s: %v", ns, err)
		}
	}
	for file, ns := range map[string]string{"backup-db-full-20261130t020000z.yaml": "default", "backup-prod.db-full-20261130t020000z.yaml": "prod"} {
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var got outpostv1.Backup
		if err := yaml.Unmarshal(data, &got); err != nil || got.Namespace != ns {
			t.Fatalf("%s holds namespace %q (%v), want %s", file, got.Namespace, err, ns)
		}
	}
	// A file of the name that holds another instance's Backup.
	other := backupOf("default")
	other.Spec.Instance.Name = "other"
	data, err := yaml.Marshal(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "backup-db-full-20261130t020000z.yaml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.writeScheduledBackup(backupOf("default")); err == nil {
		t.Fatal("a file holding another instance's Backup was taken as this slot's")
	}
}
