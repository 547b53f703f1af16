package kuberuntime

import (
	"context"
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"github.com/outpostdata/outpost/backup"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/instancemanager"
	"github.com/outpostdata/outpost/postgres"
)

// Secret keys for backups: the instance's Secret holds the bearer token of
// the instance manager's POST /backup; an ObjectStore's credentials Secret
// holds the access key, and its CA Secret the PEM bundle.
const (
	KeyBackupToken     = "backup-token"
	KeyAccessKeyID     = "accessKeyID"
	KeySecretAccessKey = "secretAccessKey"
	KeyCA              = "ca.crt"
	KeyAgeKey          = "age.key"
)

// Where the pod mounts the CA and age key Secrets.
const (
	caMount  = "/etc/outpost-backup/ca"
	keyMount = "/etc/outpost-backup/key"
)

// ManagerURL is the instance manager's HTTP endpoint through the
// instance's Service, where the controller asks for backups.
func ManagerURL(inst *outpostv1.PostgresInstance) string {
	return "http://" + serviceHost(inst) + ":" + strconv.Itoa(HTTPPort)
}

// podBackup is what an instance with spec.backup adds to its pod.
type podBackup struct {
	inst  *outpostv1.PostgresInstance
	store *outpostv1.ObjectStore
}

// backupOf reads the ObjectStore that spec.backup names; nil without
// spec.backup.
func (r *Runtime) backupOf(ctx context.Context, inst *outpostv1.PostgresInstance) (*podBackup, error) {
	if inst.Spec.Backup == nil {
		return nil, nil
	}
	store := &outpostv1.ObjectStore{}
	name := inst.Spec.Backup.ObjectStore.Name
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: inst.Namespace, Name: name}, store); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("spec.backup.objectStore: ObjectStore %s/%s does not exist", inst.Namespace, name)
		}
		return nil, fmt.Errorf("spec.backup.objectStore: %w", err)
	}
	if store.Spec.Credentials.Secret == nil {
		return nil, fmt.Errorf("spec.backup.objectStore: ObjectStore %s/%s: on Kubernetes set spec.credentials.secret (file and fromEnvironment are for a single host)", inst.Namespace, name)
	}
	return &podBackup{inst: inst, store: store}, nil
}

// config is the ConfigMap's backup section.
func (b *podBackup) config() *instancemanager.BackupConfig {
	if b == nil {
		return nil
	}
	s := b.store.Spec
	c := &instancemanager.BackupConfig{
		Store:     backup.StoreConfig{Endpoint: s.Endpoint, Bucket: s.Bucket, Prefix: s.Prefix, Region: s.Region, CreateBucket: s.CreateBucket},
		Namespace: b.inst.Namespace,
		Instance:  b.inst.Name,
	}
	if s.CASecret != nil {
		c.Store.CAFile = caMount + "/" + KeyCA
	}
	if b.inst.Spec.Backup.Encryption != nil {
		c.KeyFile = keyMount + "/" + KeyAgeKey
	}
	return c
}

// addBackup gives the pod the backup token and, with spec.backup, the
// object store's keys as environment variables, and mounts the CA and age
// key Secrets.
func addBackup(spec *appsv1.StatefulSetSpec, inst *outpostv1.PostgresInstance, b *podBackup) {
	pod := &spec.Template.Spec
	c := &pod.Containers[0]
	secretEnv := func(env, secret, key string) corev1.EnvVar {
		return corev1.EnvVar{Name: env, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key,
		}}}
	}
	c.Env = append(c.Env, secretEnv(instancemanager.EnvBackupToken, SecretName(inst), KeyBackupToken))
	if b == nil {
		return
	}
	creds := b.store.Spec.Credentials.Secret.Name
	c.Env = append(c.Env,
		secretEnv(instancemanager.EnvAccessKey, creds, KeyAccessKeyID),
		secretEnv(instancemanager.EnvSecretKey, creds, KeySecretAccessKey))
	mount := func(volume, secret, key, dir string) {
		// postgres reads them as its own user: 0400 with the pod's fsGroup.
		pod.Volumes = append(pod.Volumes, corev1.Volume{Name: volume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: secret, Items: []corev1.KeyToPath{{Key: key, Path: key}}, DefaultMode: ptrInt32(0o440),
		}}})
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: volume, MountPath: dir, ReadOnly: true})
	}
	if ca := b.store.Spec.CASecret; ca != nil {
		mount("objectstore-ca", ca.Name, KeyCA, caMount)
	}
	if enc := b.inst.Spec.Backup.Encryption; enc != nil {
		mount("backup-key", enc.KeySecret.Name, KeyAgeKey, keyMount)
	}
}

func ptrInt32(v int32) *int32 { return &v }

// ensureBackupToken gives a Secret made before backups existed its token.
func ensureBackupToken(secret *corev1.Secret) {
	if len(secret.Data[KeyBackupToken]) == 0 {
		if secret.Data == nil {
			secret.Data = map[string][]byte{}
		}
		secret.Data[KeyBackupToken] = []byte(postgres.GeneratePassword())
	}
}
