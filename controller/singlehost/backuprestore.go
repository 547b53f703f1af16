package singlehost

import (
	"context"
	"fmt"
	"io"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/outpostdata/outpost/backup"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

// RestoreOptions are what `outpost backup restore` restores, and into what.
type RestoreOptions struct {
	Namespace string
	// Source is the instance whose backups are restored; To the new one.
	Source, To string
	// BackupID is the backup to restore; empty means the newest one
	// before TargetTime.
	BackupID string
	// TargetTime is the point recovery stops at; zero means the end of
	// the archived WAL.
	TargetTime time.Time
}

// RestoreBackup writes a PostgresInstance To that recovers from Source's
// backups into the manifests directory, where `outpost up` restores it.
// The backup is chosen here first, so a target time no backup can reach
// is refused at once instead of failing in the controller later.
func RestoreBackup(ctx context.Context, sd StateDir, o RestoreOptions, out, errOut io.Writer) error {
	t, err := ResolveBackup(ctx, sd, o.Namespace, o.Source)
	if err != nil {
		return err
	}
	m, err := backup.ChooseBackup(ctx, t.Store, o.Namespace, o.Source, o.BackupID, o.TargetTime)
	if err != nil {
		return err
	}
	b, err := yaml.Marshal(recoveryInstance(t.Instance, o))
	if err != nil {
		return err
	}
	fmt.Fprintf(errOut, "restoring from backup %s (ended %s)\n", m.ID, m.StopTime.UTC().Format(time.RFC3339))
	return Apply(ctx, sd, o.To+".yaml", b, out)
}

// recoveryInstance is the new instance: source's spec, bootstrapped by
// recovery from source's object store, without source's backup policy.
// Only an encrypted source's key is kept (with its object store and
// retention), since reading the backups needs it; otherwise the new
// instance backs up nowhere until it is given a policy of its own.
func recoveryInstance(source *outpostv1.PostgresInstance, o RestoreOptions) *outpostv1.PostgresInstance {
	rec := &outpostv1.RecoveryBootstrap{Source: o.Source, ObjectStore: source.Spec.Backup.ObjectStore, BackupID: o.BackupID}
	if !o.TargetTime.IsZero() {
		rec.TargetTime = &metav1.Time{Time: o.TargetTime}
	}
	inst := &outpostv1.PostgresInstance{}
	inst.APIVersion, inst.Kind = outpostv1.GroupVersion.String(), "PostgresInstance"
	inst.Name, inst.Namespace = o.To, o.Namespace
	inst.Spec = *source.Spec.DeepCopy()
	inst.Spec.Backup = nil
	if enc := source.Spec.Backup.Encryption; enc != nil {
		inst.Spec.Backup = &outpostv1.BackupPolicy{ObjectStore: rec.ObjectStore, Encryption: enc, Retention: source.Spec.Backup.Retention}
	}
	inst.Spec.Bootstrap = outpostv1.Bootstrap{Recovery: rec}
	return inst
}
