package kuberuntime

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/postgres"
)

// Keys of the TLS Secret, as in a kubernetes.io/tls Secret.
const (
	KeyTLSCert = "tls.crt"
	KeyTLSKey  = "tls.key"
)

// ensureSecrets keeps an instance's four Secrets: the application's
// (<name>-app), the superuser's (<name>-superuser), the backup token's
// (<name>-backup-token) and the server certificate (<name>-tls). Passwords
// are made once and then kept: they are what the data directory was
// initialised with, and Secrets kept by deletionPolicy Retain are adopted
// by an instance of the same name, whose retained volume they open. The
// passwords of a Secret from before the split (<name>-credentials) move
// into the new ones, and it goes.
func (r *Runtime) ensureSecrets(ctx context.Context, inst *outpostv1.PostgresInstance) error {
	ca, err := r.siteCA(ctx)
	if err != nil {
		return err
	}
	legacy := &corev1.Secret{}
	if err := r.reader().Get(ctx, types.NamespacedName{Namespace: inst.Namespace, Name: legacySecretName(inst)}, legacy); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("secret %s: %w", legacySecretName(inst), err)
	}
	if legacy.Labels[labelManagedBy] != "outpost" {
		// Not one Outpost made: neither read nor removed.
		legacy = &corev1.Secret{}
	}
	keep := func(data map[string][]byte, key string) {
		if len(data[key]) == 0 {
			data[key] = legacy.Data[key]
		}
		if len(data[key]) == 0 {
			data[key] = []byte(postgres.GeneratePassword())
		}
	}
	if err := r.ensureSecret(ctx, inst, SuperuserSecretName(inst), func(data map[string][]byte) {
		keep(data, KeySuperuserPassword)
	}); err != nil {
		return err
	}
	if err := r.ensureSecret(ctx, inst, AppSecretName(inst), func(data map[string][]byte) {
		keep(data, KeyPassword)
		for k, v := range appSecretData(inst, string(data[KeyPassword]), ca.CertPEM) {
			data[k] = v
		}
	}); err != nil {
		return err
	}
	if err := r.ensureSecret(ctx, inst, BackupTokenSecretName(inst), func(data map[string][]byte) {
		keep(data, KeyBackupToken)
	}); err != nil {
		return err
	}
	if err := r.ensureSecret(ctx, inst, TLSSecretName(inst), func(data map[string][]byte) {
		r.renewServerCert(inst, ca, data)
	}); err != nil {
		return err
	}
	if legacy.Name != "" {
		if err := r.Client.Delete(ctx, legacy); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("remove %s, whose credentials moved to %s and %s: %w", legacy.Name, AppSecretName(inst), SuperuserSecretName(inst), err)
		}
	}
	return nil
}

// renewServerCert puts a certificate for the instance's names into the
// TLS Secret's data when it has none, or one that is about to expire or
// names other addresses; the kubelet updates the mounted files, and the
// instance manager reloads postgres with them.
func (r *Runtime) renewServerCert(inst *outpostv1.PostgresInstance, ca *postgres.CA, data map[string][]byte) {
	req := serverCertRequest(inst)
	now := time.Now()
	data[KeyCA] = ca.CertPEM
	why := ca.Reissue(data[KeyTLSCert], req, now)
	if why == "" && len(data[KeyTLSKey]) > 0 {
		return
	}
	cert, key, err := ca.Issue(req, now)
	if err != nil {
		r.Log.Error("cannot issue a server certificate", "instance", inst.Namespace+"/"+inst.Name, "err", err)
		return
	}
	data[KeyTLSCert], data[KeyTLSKey] = cert, key
	r.Log.Info("new server certificate", "instance", inst.Namespace+"/"+inst.Name, "reason", why)
}

// ensureSecret creates or updates one Secret of an instance; fill sets
// what is missing in its data. Never log the object: it holds passwords.
func (r *Runtime) ensureSecret(ctx context.Context, inst *outpostv1.PostgresInstance, name string, fill func(map[string][]byte)) error {
	secret := &corev1.Secret{ObjectMeta: r.meta(inst, name)}
	_, err := controllerutil.CreateOrUpdate(ctx, r.Client, secret, func() error {
		if secret.CreationTimestamp.IsZero() {
			secret.Type = corev1.SecretTypeOpaque
		}
		if secret.Data == nil {
			secret.Data = map[string][]byte{}
		}
		fill(secret.Data)
		secret.SetLabels(mergeMaps(secret.GetLabels(), Labels(inst)))
		return controllerutil.SetControllerReference(inst, secret, r.Scheme)
	})
	if err != nil {
		return fmt.Errorf("secret %s: %w", name, err)
	}
	return nil
}

// secretNames are the Secrets an instance owns.
func secretNames(inst *outpostv1.PostgresInstance) []string {
	return []string{AppSecretName(inst), SuperuserSecretName(inst), BackupTokenSecretName(inst), TLSSecretName(inst)}
}
