package kuberuntime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/outpostdata/outpost/backup"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/instancemanager"
	"github.com/outpostdata/outpost/test/harness"
)

func TestBackupPolicyConfiguresThePodForArchivingAndEncryption(t *testing.T) {
	api := harness.StartAPIServer(t)
	startController(t, api, &syncBuffer{})
	c, ctx := api.Client, context.Background()

	// An instance whose ObjectStore is missing says which one.
	inst := newInstance("db", outpostv1.DeletionRetain)
	inst.Spec.Backup = &outpostv1.BackupPolicy{
		ObjectStore: outpostv1.LocalObjectReference{Name: "s3"},
		Encryption:  &outpostv1.BackupEncryption{KeySecret: outpostv1.LocalObjectReference{Name: "db-age"}},
	}
	if err := c.Create(ctx, inst); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "a message naming the missing ObjectStore", func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(inst), inst); err != nil {
			return err
		}
		cond := meta.FindStatusCondition(inst.Status.Conditions, outpostv1.ConditionReady)
		if cond == nil {
			return errorf("no Ready condition")
		}
		if !strings.Contains(cond.Message, "spec.backup.objectStore: ObjectStore default/s3 does not exist") {
			return errorf("Ready condition: " + cond.Message)
		}
		return nil
	})

	recipient := createAgeKey(t, c)
	store := &outpostv1.ObjectStore{}
	store.Name, store.Namespace = "s3", "default"
	store.Spec = outpostv1.ObjectStoreSpec{
		Endpoint: "https://minio.site.local:9000", Bucket: "backups", Prefix: "site-a",
		CASecret:    &outpostv1.LocalObjectReference{Name: "minio-ca"},
		Credentials: outpostv1.ObjectStoreCredentials{Secret: &outpostv1.LocalObjectReference{Name: "minio-creds"}},
	}
	if err := c.Create(ctx, store); err != nil {
		t.Fatal(err)
	}
	var sts appsv1.StatefulSet
	var cfg instancemanager.Config
	var configMap corev1.ConfigMap
	eventually(t, 30*time.Second, "the pod configured for backups", func() error {
		cm := &configMap
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "db-config"}, cm); err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(cm.Data[instancemanager.ConfigFileName]), &cfg); err != nil {
			return err
		}
		if cfg.Backup == nil {
			return errorf("no backup section in the ConfigMap yet")
		}
		return c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "db"}, &sts)
	})
	b := cfg.Backup
	if b.Store.Endpoint != store.Spec.Endpoint || b.Store.Prefix != "site-a" || b.Namespace != "default" || b.Instance != "db" ||
		b.Store.CAFile != "/etc/outpost-backup/ca/ca.crt" || b.KeyFile != "/etc/outpost/age-recipient" || b.Store.AccessKey != "" || b.Store.SecretKey != "" {
		t.Errorf("ConfigMap backup section: %+v", b)
	}
	// Archiving gets the recipient alone, in the ConfigMap: the identity,
	// which reads every backup, is mounted in no running instance's pod.
	if got := strings.TrimSpace(configMap.Data["age-recipient"]); got != recipient {
		t.Errorf("ConfigMap age-recipient = %q, want the key's recipient %s", got, recipient)
	}
	pod := sts.Spec.Template.Spec
	secrets := map[string]string{}
	for _, v := range pod.Volumes {
		if v.Secret != nil {
			secrets[v.Secret.SecretName] = v.Name
		}
	}
	if secrets["minio-ca"] == "" || secrets["db-age"] != "" {
		t.Errorf("pod volumes from Secrets: %v, want minio-ca and not the age identity db-age", secrets)
	}
	mounts := map[string]string{}
	for _, m := range pod.Containers[0].VolumeMounts {
		mounts[m.Name] = m.MountPath
		if m.Name == secrets["minio-ca"] && !m.ReadOnly {
			t.Errorf("mount %s is writable", m.Name)
		}
	}
	if mounts[secrets["minio-ca"]] != "/etc/outpost-backup/ca" {
		t.Errorf("mounts: %v", mounts)
	}
	env := map[string]string{}
	for _, e := range pod.Containers[0].Env {
		if e.Value != "" {
			t.Errorf("env %s has a literal value; secrets come from Secrets", e.Name)
		}
		if ref := e.ValueFrom.SecretKeyRef; ref != nil {
			env[e.Name] = ref.Name + "/" + ref.Key
		}
	}
	if len(env) != 3 || env["OUTPOST_BACKUP_TOKEN"] != "db-backup-token/backup-token" || env["OUTPOST_SUPERUSER_PASSWORD"] != "db-superuser/superuser-password" || env["OUTPOST_APP_PASSWORD"] != "db-app/password" {
		t.Errorf("env from Secrets: %v, want only the passwords and the backup token (bucket keys are files)", env)
	}
	if secrets["minio-creds"] == "" || mounts[secrets["minio-creds"]] != "/etc/outpost-backup/store" || cfg.Backup.CredentialsDir != "/etc/outpost-backup/store" {
		t.Errorf("the object store's keys are not mounted where the ConfigMap says: mounts %v, credentialsDir %q", mounts, cfg.Backup.CredentialsDir)
	}
}

func TestRecoveryBootstrapConfiguresThePodToRestore(t *testing.T) {
	api := harness.StartAPIServer(t)
	startController(t, api, &syncBuffer{})
	c, ctx := api.Client, context.Background()

	// The source's store is named in spec.bootstrap.recovery; a missing one
	// is reported under that field.
	target := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	inst := newInstance("restored", outpostv1.DeletionRetain)
	inst.Spec.Bootstrap.Recovery = &outpostv1.RecoveryBootstrap{
		Source: "db", ObjectStore: outpostv1.LocalObjectReference{Name: "old-s3"},
		BackupID: "20261121T110000Z", TargetTime: &metav1.Time{Time: target},
	}
	inst.Spec.Backup = &outpostv1.BackupPolicy{
		ObjectStore: outpostv1.LocalObjectReference{Name: "new-s3"},
		Encryption:  &outpostv1.BackupEncryption{KeySecret: outpostv1.LocalObjectReference{Name: "db-age"}},
	}
	if err := c.Create(ctx, inst); err != nil {
		t.Fatal(err)
	}
	newStore := func(name, ca, creds string) {
		s := &outpostv1.ObjectStore{}
		s.Name, s.Namespace = name, "default"
		s.Spec = outpostv1.ObjectStoreSpec{Endpoint: "https://" + name + ".site.local:9000", Bucket: "backups",
			CASecret:    &outpostv1.LocalObjectReference{Name: ca},
			Credentials: outpostv1.ObjectStoreCredentials{Secret: &outpostv1.LocalObjectReference{Name: creds}}}
		if err := c.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	createAgeKey(t, c)
	newStore("new-s3", "new-ca", "new-creds")
	eventually(t, 30*time.Second, "a message naming the missing recovery ObjectStore", func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(inst), inst); err != nil {
			return err
		}
		cond := meta.FindStatusCondition(inst.Status.Conditions, outpostv1.ConditionReady)
		if cond == nil || !strings.Contains(cond.Message, "spec.bootstrap.recovery.objectStore: ObjectStore default/old-s3 does not exist") {
			return errorf(fmt.Sprintf("Ready condition: %+v", cond))
		}
		return nil
	})
	newStore("old-s3", "old-ca", "old-creds")

	var sts appsv1.StatefulSet
	var cfg instancemanager.Config
	eventually(t, 30*time.Second, "the pod configured to restore", func() error {
		var cm corev1.ConfigMap
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "restored-config"}, &cm); err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(cm.Data[instancemanager.ConfigFileName]), &cfg); err != nil {
			return err
		}
		if cfg.Recovery == nil {
			return errorf("no recovery section in the ConfigMap yet")
		}
		return c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "restored"}, &sts)
	})
	r := cfg.Recovery
	if r.Store.Endpoint != "https://old-s3.site.local:9000" || r.Namespace != "default" || r.Instance != "db" || r.BackupID != "20261121T110000Z" ||
		r.TargetTime == nil || !r.TargetTime.Equal(target) || r.Store.CAFile != "/etc/outpost-recovery/ca/ca.crt" ||
		r.KeyFile != "/etc/outpost-backup/key/age.key" || r.Store.AccessKey != "" || r.Store.SecretKey != "" {
		t.Errorf("ConfigMap recovery section: %+v", r)
	}
	if cfg.Backup == nil || cfg.Backup.Store.Endpoint != "https://new-s3.site.local:9000" || cfg.Backup.Instance != "restored" {
		t.Errorf("ConfigMap backup section: %+v", cfg.Backup)
	}
	if err := cfg.Check(); err != nil {
		t.Errorf("the ConfigMap does not pass the instance manager's check: %v", err)
	}
	pod := sts.Spec.Template.Spec
	env := map[string]string{}
	for _, e := range pod.Containers[0].Env {
		if ref := e.ValueFrom.SecretKeyRef; ref != nil {
			env[e.Name] = ref.Name + "/" + ref.Key
		}
	}
	for name, from := range env {
		if strings.Contains(from, "creds/") {
			t.Errorf("pod env %s carries the object store key %s; keys are files", name, from)
		}
	}
	volumes := map[string]string{}
	for _, v := range pod.Volumes {
		if v.Secret != nil {
			volumes[v.Name] = v.Secret.SecretName
		}
	}
	mounts := map[string]string{}
	for _, m := range pod.Containers[0].VolumeMounts {
		mounts[volumes[m.Name]] = m.MountPath
	}
	if mounts["old-ca"] != "/etc/outpost-recovery/ca" || mounts["new-ca"] != "/etc/outpost-backup/ca" || mounts["db-age"] != "/etc/outpost-backup/key" ||
		mounts["old-creds"] != "/etc/outpost-recovery/store" || mounts["new-creds"] != "/etc/outpost-backup/store" {
		t.Errorf("Secret mounts: %v", mounts)
	}
	if r.CredentialsDir != "/etc/outpost-recovery/store" || cfg.Backup.CredentialsDir != "/etc/outpost-backup/store" {
		t.Errorf("credentials directories: recovery %q, backup %q", r.CredentialsDir, cfg.Backup.CredentialsDir)
	}

	// Once the restored instance has served, the identity leaves its pod:
	// a superuser of the running instance must not read every backup's key.
	// The reconciler writes this status too, so a conflict is retried on a fresh read.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(inst), inst); err != nil {
			return err
		}
		inst.Status.Bootstrapped = true
		return c.Status().Update(ctx, inst)
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the age identity unmounted once the instance has served", func() error {
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "restored"}, &sts); err != nil {
			return err
		}
		for _, v := range sts.Spec.Template.Spec.Volumes {
			if v.Secret != nil && v.Secret.SecretName == "db-age" {
				return errorf("the StatefulSet still mounts Secret db-age")
			}
		}
		var cm corev1.ConfigMap
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "restored-config"}, &cm); err != nil {
			return err
		}
		var now instancemanager.Config
		if err := json.Unmarshal([]byte(cm.Data[instancemanager.ConfigFileName]), &now); err != nil {
			return err
		}
		if now.Recovery == nil || now.Recovery.KeyFile != "" {
			return errorf(fmt.Sprintf("recovery section %+v: want it kept, without the key file", now.Recovery))
		}
		return nil
	})
}

// createAgeKey creates the Secret db-age with a new age identity and
// returns its recipient.
func createAgeKey(t *testing.T, c client.Client) string {
	t.Helper()
	identity, err := backup.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := backup.ParseKeys(identity)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db-age", Namespace: "default"},
		Data: map[string][]byte{"age.key": []byte(identity)}}); err != nil {
		t.Fatal(err)
	}
	return keys.Recipients[0].(fmt.Stringer).String()
}
