package localruntime

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"time"

	"github.com/outpostdata/outpost/backup"
	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/archiving"
	"github.com/outpostdata/outpost/controller/safepath"
	"github.com/outpostdata/outpost/postgres"
)

// ObjectStoreLookup finds an ObjectStore by namespace and name: on one host
// from what the directory source last accepted (singlehost's lookup.go),
// never by reading the manifests directory again.
type ObjectStoreLookup func(ctx context.Context, namespace, name string) (*outpostv1.ObjectStore, error)

// StoreConfig turns an ObjectStore into what the backup package connects
// with. On one host credentials come from a file or the environment, and
// the CA bundle of spec.caSecret from the file SecretFile names.
func StoreConfig(stateDir string, os_ *outpostv1.ObjectStore) (backup.StoreConfig, error) {
	cfg := controller.ObjectStoreConfig(os_)
	if ca := os_.Spec.CASecret; ca != nil {
		var err error
		if cfg.CAFile, err = SecretFile(stateDir, os_.Namespace, safepath.Part{Field: "spec.caSecret.name", Value: ca.Name}, "ca.crt"); err != nil {
			return cfg, fmt.Errorf("ObjectStore %s/%s: %w", os_.Namespace, os_.Name, err)
		}
		if _, err := os.Stat(cfg.CAFile); err != nil {
			return cfg, fmt.Errorf("ObjectStore %s/%s: spec.caSecret %s: on a single host the CA bundle is the file %s: %w", os_.Namespace, os_.Name, ca.Name, cfg.CAFile, err)
		}
	}
	c := os_.Spec.Credentials
	var err error
	switch {
	case c.File != "":
		cfg.AccessKey, cfg.SecretKey, err = backup.ReadCredentialsFile(c.File)
	case c.FromEnvironment:
		cfg.AccessKey, cfg.SecretKey, err = backup.CredentialsFromEnvironment()
	default:
		err = fmt.Errorf("spec.credentials.secret is available on Kubernetes only; on a single host set credentials.file or credentials.fromEnvironment")
	}
	if err != nil {
		return cfg, fmt.Errorf("ObjectStore %s/%s: %w", os_.Namespace, os_.Name, err)
	}
	return cfg, nil
}

// SecretFile is where, on one host, the value under key of the Secret
// namespace/name lives: <state>/secrets/<namespace>/<name>/<key>, so that
// manifests name Secrets as they would on Kubernetes. name carries the field
// it came from: a name that would leave the secrets directory is refused,
// naming that field.
func SecretFile(stateDir, namespace string, name safepath.Part, key string) (string, error) {
	return safepath.Join(stateDir, safepath.Fixed("secrets"), safepath.Part{Field: "metadata.namespace", Value: namespace}, name, safepath.Fixed(key))
}

// KeyFile is where, on one host, the age identity of the Secret named in
// spec.backup.encryption.keySecret lives.
func KeyFile(stateDir, namespace, secret string) (string, error) {
	return SecretFile(stateDir, namespace, safepath.Part{Field: "spec.backup.encryption.keySecret.name", Value: secret}, "age.key")
}

// ArchiveConfigFile is the backup.json in an instance directory that
// wal-push and wal-fetch read.
func ArchiveConfigFile(instanceDir string) string { return filepath.Join(instanceDir, "backup.json") }

// executable is the outpost binary PostgreSQL runs as archive_command.
func (r *Runtime) executable() (string, error) {
	if r.Executable != "" {
		return r.Executable, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the outpost executable for archive_command: %w", err)
	}
	return filepath.EvalSymlinks(exe)
}

// writeArchiveConfig writes backup.json for namespace/instance's WAL in
// store, readable by the server's account only; push says it serves
// archiving, which gets the age recipient only.
func (r *Runtime) writeArchiveConfig(ctx context.Context, file, namespace, instance string, store outpostv1.LocalObjectReference, encryption *outpostv1.BackupEncryption, keyNamespace string, push bool) error {
	if r.ObjectStores == nil {
		return fmt.Errorf("object store %s: this controller has no ObjectStore source", store.Name)
	}
	obj, err := r.ObjectStores(ctx, keyNamespace, store.Name)
	if err != nil {
		return err
	}
	cfg, err := StoreConfig(r.StateDir, obj)
	if err != nil {
		return err
	}
	ac := &backup.ArchiveConfig{Store: cfg, Namespace: namespace, Instance: instance}
	if cfg.CAFile != "" {
		// wal-push runs as the server's account and must read the bundle.
		if err := postgres.OwnByServer(cfg.CAFile); err != nil {
			return err
		}
	}
	if encryption != nil {
		keyFile, err := KeyFile(r.StateDir, keyNamespace, encryption.KeySecret.Name)
		if err != nil {
			return err
		}
		keys, err := backup.ReadKeyFile(keyFile)
		if err != nil {
			return fmt.Errorf("spec.backup.encryption.keySecret %s: %w (on a single host the key is the file %s; outpost backup key generate %s makes one)", encryption.KeySecret.Name, err, keyFile, encryption.KeySecret.Name)
		}
		// Archiving needs only the recipient: the identity stays readable
		// by root alone, and restores hand it to wal-fetch themselves.
		if push {
			ac.Recipient = keys.Recipient()
		} else {
			ac.KeyFile = keyFile
		}
	}
	if err := backup.WriteArchiveConfig(file, ac); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	return postgres.OwnByServer(file)
}

// archiveSettings are the ManagedSettings of an instance: WAL archiving when
// it has a backup policy; otherwise archive_mode stays on with a command
// that stores nothing, so adding a policy later reloads instead of
// restarting (see archiving.IdleSettings).
func (r *Runtime) archiveSettings(ctx context.Context, inst *outpostv1.PostgresInstance, dir string) (map[string]string, error) {
	if inst.Spec.Backup == nil {
		return archiving.IdleSettings(), nil
	}
	file := ArchiveConfigFile(dir)
	if err := r.writeArchiveConfig(ctx, file, inst.Namespace, inst.Name, inst.Spec.Backup.ObjectStore, inst.Spec.Backup.Encryption, inst.Namespace, true); err != nil {
		return nil, fmt.Errorf("spec.backup: %w", err)
	}
	exe, err := r.executable()
	if err != nil {
		return nil, err
	}
	return backup.ArchiveSettings(exe, file), nil
}

// syncArchiveSettings brings a running instance's archive settings to the
// spec; it reports whether they changed, so setup applies them.
func (r *Runtime) syncArchiveSettings(ctx context.Context, in *instance, inst *outpostv1.PostgresInstance) (bool, error) {
	want, err := r.archiveSettings(ctx, inst, in.dir)
	if err != nil {
		return false, err
	}
	if maps.Equal(want, in.server.ManagedSettings) {
		return false, nil
	}
	in.server.ManagedSettings = want
	return true, nil
}

// restore creates the data directory from the backup that
// spec.bootstrap.recovery names, and runs recovery to its end or target
// time. The restored server is stopped afterwards; load starts it.
func (r *Runtime) restore(ctx context.Context, inst *outpostv1.PostgresInstance, dir string, srv *postgres.Server) error {
	rec := inst.Spec.Bootstrap.Recovery
	key := inst.Namespace + "/" + inst.Name
	// The restore reads the source's WAL with a backup.json of its own.
	file := filepath.Join(dir, "restore.json")
	var enc *outpostv1.BackupEncryption
	if inst.Spec.Backup != nil {
		enc = inst.Spec.Backup.Encryption
	}
	if err := r.writeArchiveConfig(ctx, file, inst.Namespace, rec.Source, rec.ObjectStore, enc, inst.Namespace, false); err != nil {
		return fmt.Errorf("spec.bootstrap.recovery: %w", err)
	}
	ac, err := backup.ReadArchiveConfig(file)
	if err != nil {
		return err
	}
	keys, err := ac.Keys()
	if err != nil {
		return err
	}
	store, err := backup.Open(ctx, ac.Store)
	if err != nil {
		return fmt.Errorf("spec.bootstrap.recovery: %w", err)
	}
	exe, err := r.executable()
	if err != nil {
		return err
	}
	return backup.RestoreInto(ctx, srv, store, keys, backup.RestoreOptions{
		Namespace: inst.Namespace, Instance: rec.Source, BackupID: rec.BackupID, TargetTime: targetTime(rec),
	}, exe, file, r.Log.With("instance", key))
}

func targetTime(rec *outpostv1.RecoveryBootstrap) (t time.Time) {
	if rec.TargetTime != nil {
		t = rec.TargetTime.Time
	}
	return t
}
