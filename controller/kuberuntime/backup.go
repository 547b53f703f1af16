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
	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/instancemanager"
)

// Secret keys for backups: the instance's backup token Secret holds the bearer token of
// the instance manager's POST /backup; an ObjectStore's credentials Secret
// holds the access key, and its CA Secret the PEM bundle.
const (
	KeyBackupToken     = "backup-token"
	KeyAccessKeyID     = "accessKeyID"
	KeySecretAccessKey = "secretAccessKey"
	KeyCA              = "ca.crt"
	KeyAgeKey          = "age.key"
)

// Where the pod mounts the object store's CA, keys and the age key
// Secrets. The keys are files, never environment variables: the server's
// processes do not inherit them, and only the archiving and restoring
// code reads them.
const (
	caMount        = "/etc/outpost-backup/ca"
	keyMount       = "/etc/outpost-backup/key"
	storeKeysMount = "/etc/outpost-backup/store"
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
	// recipient is the age public key of spec.backup.encryption: all that
	// archiving and base backups need. The identity, which reads every
	// backup in the bucket, never enters a running instance's pod.
	recipient string
}

// RecipientFile is the ConfigMap key, and so the file in the pod, that
// holds the age recipient backups are encrypted to.
const RecipientFile = "age-recipient"

// backupOf reads the ObjectStore that spec.backup names; nil without
// spec.backup.
func (r *Runtime) backupOf(ctx context.Context, inst *outpostv1.PostgresInstance) (*podBackup, error) {
	if inst.Spec.Backup == nil {
		return nil, nil
	}
	store, err := r.objectStore(ctx, inst.Namespace, inst.Spec.Backup.ObjectStore.Name, "spec.backup.objectStore")
	if err != nil {
		return nil, err
	}
	b := &podBackup{inst: inst, store: store}
	if enc := inst.Spec.Backup.Encryption; enc != nil {
		if b.recipient, err = r.recipientOf(ctx, inst.Namespace, enc.KeySecret.Name); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// recipientOf reads the age identity in a Secret and returns its
// recipient (public key).
func (r *Runtime) recipientOf(ctx context.Context, namespace, name string) (string, error) {
	secret := &corev1.Secret{}
	if err := r.reader().Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, secret); err != nil {
		return "", fmt.Errorf("spec.backup.encryption.keySecret %s/%s: %w", namespace, name, err)
	}
	keys, err := backup.ParseKeys(string(secret.Data[KeyAgeKey]))
	if err != nil {
		return "", fmt.Errorf("spec.backup.encryption.keySecret %s/%s, key %s: %w", namespace, name, KeyAgeKey, err)
	}
	recipient, ok := keys.Recipients[0].(fmt.Stringer)
	if !ok {
		return "", fmt.Errorf("spec.backup.encryption.keySecret %s/%s: the key has no printable recipient", namespace, name)
	}
	return recipient.String(), nil
}

// objectStore reads an ObjectStore a pod can use: one with a credentials
// Secret. Errors start with field, the reference that named it.
func (r *Runtime) objectStore(ctx context.Context, namespace, name, field string) (*outpostv1.ObjectStore, error) {
	store := &outpostv1.ObjectStore{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, store); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%s: ObjectStore %s/%s does not exist", field, namespace, name)
		}
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	if store.Spec.Credentials.Secret == nil {
		return nil, fmt.Errorf("%s: ObjectStore %s/%s: on Kubernetes set spec.credentials.secret (file and fromEnvironment are for a single host)", field, namespace, name)
	}
	return store, nil
}

// storeConfig is what the pod connects to store with, without the keys;
// caFile is where the pod mounts its CA Secret.
func storeConfig(store *outpostv1.ObjectStore, caFile string) backup.StoreConfig {
	c := controller.ObjectStoreConfig(store)
	if store.Spec.CASecret != nil {
		c.CAFile = caFile
	}
	return c
}

// secretEnv is an environment variable from a Secret's key.
func secretEnv(env, secret, key string) corev1.EnvVar {
	return corev1.EnvVar{Name: env, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key,
	}}}
}

// mountSecret mounts keys of a Secret read-only into the pod's container
// at dir; postgres reads them as its own user: 0440 with the pod's fsGroup.
func mountSecret(pod *corev1.PodSpec, volume, secret, dir string, keys ...string) {
	items := make([]corev1.KeyToPath, len(keys))
	for i, k := range keys {
		items[i] = corev1.KeyToPath{Key: k, Path: k}
	}
	pod.Volumes = append(pod.Volumes, corev1.Volume{Name: volume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
		SecretName: secret, Items: items, DefaultMode: ptrInt32(0o440),
	}}})
	c := &pod.Containers[0]
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: volume, MountPath: dir, ReadOnly: true})
}

// config is the ConfigMap's backup section.
func (b *podBackup) config() *instancemanager.BackupConfig {
	if b == nil {
		return nil
	}
	c := &instancemanager.BackupConfig{
		Store:          storeConfig(b.store, caMount+"/"+KeyCA),
		Namespace:      b.inst.Namespace,
		Instance:       b.inst.Name,
		CredentialsDir: storeKeysMount,
	}
	if b.recipient != "" {
		c.KeyFile = configDir + "/" + RecipientFile
	}
	return c
}

// addBackup gives the pod the backup token and, with spec.backup, mounts
// the object store's keys and its CA; the age recipient comes with the
// ConfigMap.
func addBackup(spec *appsv1.StatefulSetSpec, inst *outpostv1.PostgresInstance, b *podBackup) {
	pod := &spec.Template.Spec
	c := &pod.Containers[0]
	c.Env = append(c.Env, secretEnv(instancemanager.EnvBackupToken, BackupTokenSecretName(inst), KeyBackupToken))
	if b == nil {
		return
	}
	mountSecret(pod, "objectstore-keys", b.store.Spec.Credentials.Secret.Name, storeKeysMount, KeyAccessKeyID, KeySecretAccessKey)
	if ca := b.store.Spec.CASecret; ca != nil {
		mountSecret(pod, "objectstore-ca", ca.Name, caMount, KeyCA)
	}

}

func ptrInt32(v int32) *int32 { return &v }
