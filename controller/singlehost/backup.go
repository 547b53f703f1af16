package singlehost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/outpostdata/outpost/backup"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/controldb"
	"github.com/outpostdata/outpost/controller/localruntime"
)

// BackupTarget is what backing up, listing and restoring one instance's
// backups on this host needs.
type BackupTarget struct {
	Instance *outpostv1.PostgresInstance
	Store    *backup.Store
	Keys     backup.Keys
	// StoreConfig and KeyFile are what Store and Keys were made from.
	StoreConfig backup.StoreConfig
	KeyFile     string
	// ConnString is a superuser URI of the running instance; DataDir its
	// data directory.
	ConnString string
	DataDir    string
}

// ResolveBackup finds an instance, its object store and key, and its
// credentials, and opens the object store. The instance and its
// ObjectStore are the ones the controller accepted (see commandLookup).
func ResolveBackup(ctx context.Context, sd StateDir, namespace, name string) (*BackupTarget, error) {
	if err := sd.mustExist(); err != nil {
		return nil, err
	}
	l, done, err := sd.commandLookup(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	inst, err := l.instances()(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	if inst.Spec.Backup == nil {
		return nil, fmt.Errorf("PostgresInstance %s/%s has no spec.backup: add an object store to back it up", namespace, name)
	}
	t := &BackupTarget{Instance: inst}
	os_, err := l.objectStores()(ctx, namespace, inst.Spec.Backup.ObjectStore.Name)
	if err != nil {
		return nil, err
	}
	cfg, err := localruntime.StoreConfig(sd.Root, os_)
	if err != nil {
		return nil, err
	}
	t.StoreConfig = cfg
	if t.Store, err = backup.Open(ctx, cfg); err != nil {
		return nil, err
	}
	if enc := inst.Spec.Backup.Encryption; enc != nil {
		if t.KeyFile, err = localruntime.KeyFile(sd.Root, namespace, enc.KeySecret.Name); err != nil {
			return nil, err
		}
		if t.Keys, err = backup.ReadKeyFile(t.KeyFile); err != nil {
			return nil, err
		}
	}
	dir, err := sd.Instance(namespace, name)
	if err != nil {
		return nil, err
	}
	t.DataDir = filepath.Join(dir, "data")
	// An instance not provisioned yet has no superuser file: ConnString
	// stays empty and the caller says so. Any other failure (a damaged
	// file, no permission to read it) is the user's to see as it is.
	switch u, err := localruntime.SuperuserURL(dir, "postgres"); {
	case err == nil:
		t.ConnString = u
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("instance %s/%s: %w", namespace, name, err)
	}
	return t, nil
}

// RecordVerification writes the result of `outpost backup verify` into the
// status.verification of the Backups that recorded backup id, through the
// running controller's controldb, and returns their names. It fails when
// the controller is not running, since status lives in controldb.
func RecordVerification(ctx context.Context, sd StateDir, namespace, instance, id string, v *outpostv1.BackupVerification) ([]string, error) {
	db, err := controldb.ConnectLocal(ctx, sd.ControlDB())
	if err != nil {
		return nil, fmt.Errorf("the controller is not running (start it with `outpost up`), so no Backup status was updated: %w", err)
	}
	defer db.Close()
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return db.SetVerification(ctx, namespace, instance, id, b)
}
