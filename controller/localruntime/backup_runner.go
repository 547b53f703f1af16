package localruntime

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/outpostdata/outpost/backup"
	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

// openBackupStore opens the object store and key of an instance's backup
// policy.
func (r *Runtime) openBackupStore(ctx context.Context, inst *outpostv1.PostgresInstance) (*backup.Store, backup.Keys, error) {
	if inst.Spec.Backup == nil {
		return nil, backup.Keys{}, fmt.Errorf("%s/%s has no spec.backup", inst.Namespace, inst.Name)
	}
	if r.ObjectStores == nil {
		return nil, backup.Keys{}, fmt.Errorf("this controller has no ObjectStore source")
	}
	obj, err := r.ObjectStores(ctx, inst.Namespace, inst.Spec.Backup.ObjectStore.Name)
	if err != nil {
		return nil, backup.Keys{}, err
	}
	cfg, err := StoreConfig(r.StateDir, obj)
	if err != nil {
		return nil, backup.Keys{}, err
	}
	var keys backup.Keys
	if enc := inst.Spec.Backup.Encryption; enc != nil {
		file, err := KeyFile(r.StateDir, inst.Namespace, enc.KeySecret.Name)
		if err != nil {
			return nil, keys, err
		}
		if keys, err = backup.ReadKeyFile(file); err != nil {
			return nil, keys, err
		}
	}
	s, err := backup.Open(ctx, cfg)
	return s, keys, err
}

// RunBackup makes a base backup of a running local instance.
func (r *Runtime) RunBackup(ctx context.Context, inst *outpostv1.PostgresInstance, typ outpostv1.BackupType, onStart func(id string)) (*backup.Manifest, string, error) {
	s, keys, err := r.openBackupStore(ctx, inst)
	if err != nil {
		return nil, "", err
	}
	dir, err := InstanceDir(r.StateDir, inst.Namespace, inst.Name)
	if err != nil {
		return nil, "", err
	}
	connString, err := SuperuserURL(dir, "postgres")
	if err != nil {
		return nil, "", err
	}
	start := time.Now()
	m, err := backup.Create(ctx, backup.CreateOptions{
		Store: s, Namespace: inst.Namespace, Instance: inst.Name,
		ConnString: connString, DataDir: filepath.Join(dir, "data"), Keys: keys, OnStart: onStart,
		Type: string(typ),
	})
	if err != nil {
		return nil, "", err
	}
	r.Log.Info("backup completed", "instance", inst.Namespace+"/"+inst.Name, "backup", m.ID, "bytes", m.SourceBytes, "stored", m.StoredBytes, "took", time.Since(start).Round(time.Millisecond))
	return m, backup.Location(s, m), nil
}

// ApplyRetention applies the instance's retention policy to its backups.
func (r *Runtime) ApplyRetention(ctx context.Context, inst *outpostv1.PostgresInstance, now time.Time) (*backup.RetentionResult, error) {
	p, err := controller.RetentionOf(inst.Spec.Backup.Retention)
	if err != nil {
		return nil, err
	}
	s, _, err := r.openBackupStore(ctx, inst)
	if err != nil {
		return nil, err
	}
	return backup.ApplyRetention(ctx, s, inst.Namespace, inst.Name, p, now)
}
