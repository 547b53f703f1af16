package dirsource

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/safepath"
)

// reconcileBackup runs the Backup reconciler on a manifest's object.
func (c *Controller) reconcileBackup(ctx context.Context, u *unstructured.Unstructured, key, file string) (any, time.Duration, error) {
	b := &outpostv1.Backup{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, b); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", key, err)
	}
	requeue := c.backups.Reconcile(ctx, b)
	if c.backups.Expired(b) {
		// The next pass sees the file gone and forgets the Backup.
		if err := os.Remove(file); err != nil && !os.IsNotExist(err) {
			return nil, 0, fmt.Errorf("%s: remove the expired scheduled Backup: %w", key, err)
		}
		c.log.Info("scheduled Backup removed: retention deleted its backup", "backup", key, "id", b.Status.BackupID)
		requeue = time.Millisecond
	}
	return b, requeue, nil
}

// writeScheduledBackup writes the Backup a schedule asked for into the
// manifests directory, where the next pass picks it up like any other: the
// directory stays the one source of what exists, and `outpost get backups`
// and `outpost delete backup` work on scheduled backups too. The file is
// written under a hidden name and renamed, so a pass never reads half of it.
// A file of that name already there holding this very Backup is the same
// slot's, written before a restart lost the status that recorded it:
// writing it is done. One holding anything else is an error, so that the
// slot is not counted as taken.
func (c *Controller) writeScheduledBackup(b *outpostv1.Backup) error {
	spec := map[string]any{"instance": map[string]any{"name": b.Spec.Instance.Name}}
	if b.Spec.Type != "" {
		spec["type"] = string(b.Spec.Type)
	}
	data, err := yaml.Marshal(map[string]any{
		"apiVersion": b.APIVersion, "kind": b.Kind,
		"metadata": map[string]any{"name": b.Name, "namespace": b.Namespace, "labels": b.Labels},
		"spec":     spec,
	})
	if err != nil {
		return err
	}
	file, err := safepath.Join(c.dir, safepath.Part{Field: "metadata.name", Value: scheduledBackupFile(b)})
	if err != nil {
		return err
	}
	if existing, err := os.ReadFile(file); err == nil {
		var there outpostv1.Backup
		if err := yaml.Unmarshal(existing, &there); err != nil || there.Namespace != b.Namespace || there.Name != b.Name ||
			there.Spec.Instance.Name != b.Spec.Instance.Name || there.Spec.Type != b.Spec.Type {
			return fmt.Errorf("scheduled Backup %s/%s: %s already holds another manifest (Backup %s/%s of instance %q, type %q): move it away", b.Namespace, b.Name, file, there.Namespace, there.Name, there.Spec.Instance.Name, there.Spec.Type)
		}
		c.log.Info("scheduled backup already created", "backup", b.Namespace+"/"+b.Name, "file", file)
		return nil
	} else if !os.IsNotExist(err) {
		return err
	}
	tmp := filepath.Join(filepath.Dir(file), "."+filepath.Base(file)+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, file); err != nil {
		os.Remove(tmp)
		return err
	}
	c.log.Info("scheduled backup created", "backup", b.Namespace+"/"+b.Name, "file", file)
	return nil
}

// scheduledBackupFile is the manifest file of a scheduled Backup. Two
// instances of the same name in different namespaces with the same
// schedule have Backups of the same name, so a namespace other than default
// is part of the file name; a namespace is a DNS label, with no dot, and a
// scheduled Backup's name has none either, so the dot keeps the two apart.
func scheduledBackupFile(b *outpostv1.Backup) string {
	if b.Namespace == "" || b.Namespace == "default" {
		return "backup-" + b.Name + ".yaml"
	}
	return "backup-" + b.Namespace + "." + b.Name + ".yaml"
}
