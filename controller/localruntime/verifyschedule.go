package localruntime

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/outpostdata/outpost/backup"
	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

var _ controller.RestoreVerifier = (*Runtime)(nil)

// VerifyNewestBackup runs one scheduled verification of inst's newest
// completed backup on this host: every object is re-read against its
// checksum, the archive is checked for the WAL the backup needs, and with
// restore the backup is restored into a throw-away server under the state
// directory (as `outpost backup verify --restore` does), which is checked
// with amcheck and row counts and removed again.
func (r *Runtime) VerifyNewestBackup(ctx context.Context, inst *outpostv1.PostgresInstance, restore bool) (*controller.VerificationReport, error) {
	if inst.Spec.Backup == nil {
		return nil, fmt.Errorf("%s/%s has no spec.backup", inst.Namespace, inst.Name)
	}
	if r.ObjectStores == nil {
		return nil, fmt.Errorf("object store %s: this controller has no ObjectStore source", inst.Spec.Backup.ObjectStore.Name)
	}
	obj, err := r.ObjectStores(ctx, inst.Namespace, inst.Spec.Backup.ObjectStore.Name)
	if err != nil {
		return nil, fmt.Errorf("spec.backup.objectStore: %w", err)
	}
	cfg, err := StoreConfig(r.StateDir, obj)
	if err != nil {
		return nil, err
	}
	keyFile := ""
	if enc := inst.Spec.Backup.Encryption; enc != nil {
		if keyFile, err = KeyFile(r.StateDir, inst.Namespace, enc.KeySecret.Name); err != nil {
			return nil, fmt.Errorf("spec.backup.encryption.keySecret.name: %w", err)
		}
	}
	store, err := backup.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	m, err := backup.ChooseBackup(ctx, store, inst.Namespace, inst.Name, "", time.Time{})
	if err != nil {
		return nil, err
	}
	rep := &controller.VerificationReport{BackupID: m.ID}
	if err := checkObjectsAndWAL(ctx, store, inst, m.ID); err != nil {
		return rep, err
	}
	if !restore {
		rep.Summary = fmt.Sprintf("%d objects match their checksums and the WAL the backup needs is archived (no restore: spec.backup.verification.restore is false)", len(m.Objects))
		return rep, nil
	}
	exe, err := r.executable()
	if err != nil {
		return rep, err
	}
	check, err := VerifyByRestore(ctx, cfg, keyFile, inst.Namespace, inst.Name, m.ID, exe, r.StateDir, r.Log.With("verify", inst.Namespace+"/"+inst.Name))
	if err != nil {
		return rep, fmt.Errorf("restore of backup %s: %w", m.ID, err)
	}
	rep.Restored, rep.RecoveredTo = true, check.RecoveredTill
	if rep.RecoveredTo.Before(m.StopTime) {
		// Recovery replayed no transaction after the backup: it reached
		// the backup's own consistent point.
		rep.RecoveredTo = m.StopTime
	}
	rep.Summary = fmt.Sprintf("restored in %s; %d databases, %d tables, %d rows, %d B-tree indexes pass amcheck",
		check.RestoreTook.Round(time.Second), check.Databases, check.Tables, check.Rows, check.IndexesOK)
	return rep, nil
}

// checkObjectsAndWAL re-reads every object of the backup against the
// manifest's checksums, and checks the archive's continuity from the
// backup's start to the newest archived segment: a gap there cuts every
// later point-in-time recovery short, and must show before a restore needs
// it.
func checkObjectsAndWAL(ctx context.Context, store *backup.Store, inst *outpostv1.PostgresInstance, id string) error {
	res, err := backup.Verify(ctx, store, inst.Namespace, inst.Name, id)
	if err != nil {
		return fmt.Errorf("backup %s: %w", id, err)
	}
	if !res.OK {
		return fmt.Errorf("backup %s: %s", id, strings.Join(res.Errors, "; "))
	}
	cont, err := backup.CheckContinuity(ctx, store, inst.Namespace, inst.Name, id)
	if err != nil {
		return fmt.Errorf("backup %s: archive continuity: %w", id, err)
	}
	if !cont.OK() {
		return errors.New(cont.String())
	}
	return nil
}
