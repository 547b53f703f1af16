package kuberuntime

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/instancemanager"
)

// Where the pod mounts the CA Secret of the store a restore reads; apart
// from the backup store's, since the two may be different stores.
const (
	recoveryCAMount   = "/etc/outpost-recovery/ca"
	recoveryKeysMount = "/etc/outpost-recovery/store"
)

// podRecovery is what an instance with spec.bootstrap.recovery adds to its
// pod: the instance manager restores the source's backup on the first
// start instead of running initdb.
type podRecovery struct {
	inst  *outpostv1.PostgresInstance
	store *outpostv1.ObjectStore
}

// recoveryOf reads the ObjectStore that spec.bootstrap.recovery names; nil
// without spec.bootstrap.recovery.
func (r *Runtime) recoveryOf(ctx context.Context, inst *outpostv1.PostgresInstance) (*podRecovery, error) {
	if inst.Spec.Bootstrap.Recovery == nil {
		return nil, nil
	}
	store, err := r.objectStore(ctx, inst.Namespace, inst.Spec.Bootstrap.Recovery.ObjectStore.Name, "spec.bootstrap.recovery.objectStore")
	if err != nil {
		return nil, err
	}
	return &podRecovery{inst: inst, store: store}, nil
}

// config is the ConfigMap's recovery section. The age key is the one of
// spec.backup.encryption, as on a single host; only a pod that restores
// mounts it (addRecovery), since reading backups needs the identity.
func (p *podRecovery) config() *instancemanager.RecoveryConfig {
	if p == nil {
		return nil
	}
	rec := p.inst.Spec.Bootstrap.Recovery
	c := &instancemanager.RecoveryConfig{
		Store:          storeConfig(p.store, recoveryCAMount+"/"+KeyCA),
		Namespace:      p.inst.Namespace,
		Instance:       rec.Source,
		BackupID:       rec.BackupID,
		CredentialsDir: recoveryKeysMount,
	}
	if rec.TargetTime != nil {
		t := rec.TargetTime.UTC()
		c.TargetTime = &t
	}
	if p.mountsIdentity() {
		c.KeyFile = keyMount + "/" + KeyAgeKey
	}
	return c
}

// mountsIdentity reports whether the pod restores encrypted backups, the
// one case where it needs the age identity. Once the instance has served
// (status.bootstrapped), the restore is over and the identity leaves the
// pod, so a superuser of the running instance cannot read it; a pod that
// later finds an empty volume then fails its restore loudly instead.
func (p *podRecovery) mountsIdentity() bool {
	return p != nil && !p.inst.Status.Bootstrapped && p.inst.Spec.Backup != nil && p.inst.Spec.Backup.Encryption != nil
}

// addRecovery mounts the recovery store's keys and its CA Secret, apart
// from the backup store's.
func addRecovery(spec *appsv1.StatefulSetSpec, p *podRecovery) {
	if p == nil {
		return
	}
	pod := &spec.Template.Spec
	mountSecret(pod, "recovery-keys", p.store.Spec.Credentials.Secret.Name, recoveryKeysMount, KeyAccessKeyID, KeySecretAccessKey)
	if ca := p.store.Spec.CASecret; ca != nil {
		mountSecret(pod, "recovery-ca", ca.Name, recoveryCAMount, KeyCA)
	}
	if p.mountsIdentity() {
		mountSecret(pod, "backup-key", p.inst.Spec.Backup.Encryption.KeySecret.Name, keyMount, KeyAgeKey)
	}
}
