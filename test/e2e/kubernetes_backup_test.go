package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/outpostdata/outpost/backup"
	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/instancemanager"
	"github.com/outpostdata/outpost/controller/kube"
	"github.com/outpostdata/outpost/controller/kuberuntime"
	"github.com/outpostdata/outpost/test/harness"
)

// TestKubernetesBackupRunsInTheInstanceManager drives the kubernetes path
// of backups against envtest and a real MinIO: the ObjectStore reconciler
// checks buckets, the kubernetes runtime gives the pod its archive and
// backup settings, and a Backup object makes the controller ask the
// instance manager's authenticated POST /backup. No kubelet runs pods
// here, so the test plays kubelet: it runs `outpost instance run` with the
// ConfigMap and Secrets the controller created.
func TestKubernetesBackupRunsInTheInstanceManager(t *testing.T) {
	api := harness.StartAPIServer(t)
	m := harness.StartMinIO(t)
	c := api.Client
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "minio-creds", Namespace: "default"},
		StringData: map[string]string{"accessKeyID": m.AccessKey, "secretAccessKey": m.SecretKey}}))
	store := func(name, bucket string, create bool) *outpostv1.ObjectStore {
		os_ := &outpostv1.ObjectStore{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: outpostv1.ObjectStoreSpec{
			Endpoint: m.URL(), Bucket: bucket, CreateBucket: create,
			Credentials: outpostv1.ObjectStoreCredentials{Secret: &outpostv1.LocalObjectReference{Name: "minio-creds"}},
		}}
		must(c.Create(ctx, os_))
		return os_
	}
	good, missing := store("minio", "kube-backups", true), store("nobucket", "missing-bucket", false)

	var mu sync.Mutex
	managerURL := ""
	mgr, err := kube.NewManager(kube.Options{
		Config: api.Config, Log: harness.Logger(t), MinRequeue: 10 * time.Second,
		NewRuntime: func(cl client.Client, s *runtime.Scheme) (controller.InstanceRuntime, error) {
			return &kuberuntime.Runtime{Client: cl, Scheme: s, Log: slog.New(slog.DiscardHandler), Pods: kuberuntime.PodOptions{Image: "outpost/instance:test"}}, nil
		},
		// The Service's DNS name does not resolve without a cluster; the
		// pod's HTTP port is on loopback here.
		BackupManagerURL: func(*outpostv1.PostgresInstance) string { mu.Lock(); defer mu.Unlock(); return managerURL },
	})
	must(err)
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// ObjectStores: a reachable bucket is Ready, a missing one says so.
	readyOf := func(obj *outpostv1.ObjectStore) *metav1.Condition {
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return nil
		}
		return meta.FindStatusCondition(obj.Status.Conditions, outpostv1.ConditionReady)
	}
	waitFor(t, time.Minute, "ObjectStore conditions", func() bool { return readyOf(good) != nil && readyOf(missing) != nil })
	if cond := readyOf(good); cond.Status != metav1.ConditionTrue {
		t.Fatalf("ObjectStore minio (createBucket): %+v", cond)
	}
	if cond := readyOf(missing); cond.Status != metav1.ConditionFalse || cond.Reason != kube.ReasonBucketMissing || !strings.Contains(cond.Message, `bucket "missing-bucket" does not exist`) {
		t.Fatalf("ObjectStore nobucket: %+v", cond)
	}

	// The instance's pod is configured for archiving and backups.
	inst := &outpostv1.PostgresInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "default"}, Spec: outpostv1.PostgresInstanceSpec{
		Resources:  outpostv1.InstanceResources{CPU: resource.MustParse("1"), Memory: resource.MustParse("512Mi")},
		Storage:    outpostv1.InstanceStorage{Size: resource.MustParse("1Gi")},
		Extensions: []outpostv1.Extension{"vector"},
		Backup:     &outpostv1.BackupPolicy{ObjectStore: outpostv1.LocalObjectReference{Name: "minio"}},
	}}
	must(c.Create(ctx, inst))
	var sts appsv1.StatefulSet
	var cm corev1.ConfigMap
	var secret corev1.Secret
	waitFor(t, time.Minute, "the instance's objects", func() bool {
		return c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "db"}, &sts) == nil &&
			c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "db-config"}, &cm) == nil &&
			c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "db-credentials"}, &secret) == nil
	})
	env := map[string]string{}
	for _, e := range sts.Spec.Template.Spec.Containers[0].Env {
		if ref := e.ValueFrom.SecretKeyRef; ref != nil {
			env[e.Name] = ref.Name + "/" + ref.Key
		}
	}
	for name, want := range map[string]string{"AWS_ACCESS_KEY_ID": "minio-creds/accessKeyID", "AWS_SECRET_ACCESS_KEY": "minio-creds/secretAccessKey", "OUTPOST_BACKUP_TOKEN": "db-credentials/backup-token"} {
		if env[name] != want {
			t.Errorf("pod env %s from %q, want the Secret key %s", name, env[name], want)
		}
	}
	var cfg instancemanager.Config
	must(json.Unmarshal([]byte(cm.Data[instancemanager.ConfigFileName]), &cfg))
	if cfg.Backup == nil || cfg.Backup.Store.Bucket != "kube-backups" || cfg.Backup.Instance != "db" || cfg.Backup.Store.AccessKey != "" {
		t.Fatalf("ConfigMap backup section: %+v", cfg.Backup)
	}
	var svc corev1.Service
	must(c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "db"}, &svc))
	if len(svc.Spec.Ports) != 2 || svc.Spec.Ports[1].Port != kuberuntime.HTTPPort {
		t.Errorf("Service ports %+v, want postgres and the instance manager's", svc.Spec.Ports)
	}

	// Play kubelet: run the pod's entrypoint with what the pod would get.
	dir := harness.TempDir(t)
	dataDir := filepath.Join(dir, "volume", "pgdata")
	must(os.MkdirAll(filepath.Dir(dataDir), 0o755))
	cfg.Port = harness.FreePort(t)
	b, _ := json.Marshal(cfg)
	configFile := filepath.Join(dir, "instance.json")
	must(os.WriteFile(configFile, b, 0o644))
	httpAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	token := string(secret.Data[kuberuntime.KeyBackupToken])
	if len(token) < 16 {
		t.Fatalf("backup token %q is too short", token)
	}
	cmd := exec.Command(outpostBin, "instance", "run", "--data-dir", dataDir, "--config", configFile,
		"--listen-address", "127.0.0.1", "--http-addr", httpAddr)
	cmd.Env = append(os.Environ(),
		"OUTPOST_SUPERUSER_PASSWORD="+string(secret.Data[kuberuntime.KeySuperuserPassword]),
		"OUTPOST_APP_PASSWORD="+string(secret.Data[kuberuntime.KeyPassword]),
		"OUTPOST_BACKUP_TOKEN="+token,
		"AWS_ACCESS_KEY_ID="+m.AccessKey, "AWS_SECRET_ACCESS_KEY="+m.SecretKey)
	logPath := filepath.Join(dir, "manager.log")
	logf, err := os.Create(logPath)
	must(err)
	cmd.Stdout, cmd.Stderr = logf, logf
	must(cmd.Start())
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
		(&site{}).stopStrayServersIn(dataDir)
	})
	logTail := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	base := "http://" + httpAddr
	waitFor(t, 2*time.Minute, "the instance manager ready", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	// POST /backup wants the instance's token.
	post := func(auth string) int {
		req, _ := http.NewRequest(http.MethodPost, base+"/backup", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, auth := range []string{"", "Bearer wrong-token", "Basic " + token, "Bearer " + token + "x"} {
		if code := post(auth); code != http.StatusUnauthorized {
			t.Errorf("POST /backup with Authorization %q: %d, want 401", auth, code)
		}
	}

	// A Backup object: the controller asks the instance manager, which
	// backs up into MinIO; archiving works too.
	mu.Lock()
	managerURL = base
	mu.Unlock()
	bk := &outpostv1.Backup{ObjectMeta: metav1.ObjectMeta{Name: "b1", Namespace: "default"}, Spec: outpostv1.BackupSpec{Instance: outpostv1.LocalObjectReference{Name: "db"}}}
	must(c.Create(ctx, bk))
	waitFor(t, 3*time.Minute, "Backup b1 finishing", func() bool {
		must(c.Get(ctx, client.ObjectKeyFromObject(bk), bk))
		return bk.Status.Phase == outpostv1.BackupCompleted || bk.Status.Phase == outpostv1.BackupFailed
	})
	if bk.Status.Phase != outpostv1.BackupCompleted || bk.Status.BackupID == "" || bk.Status.StopLSN == "" || !strings.Contains(bk.Status.Location, "kube-backups") {
		t.Fatalf("Backup b1: %+v\nmanager log:\n%s", bk.Status, logTail())
	}
	s, err := backup.Open(ctx, backup.StoreConfig{Endpoint: m.URL(), Bucket: "kube-backups", AccessKey: m.AccessKey, SecretKey: m.SecretKey})
	must(err)
	if v, err := backup.Verify(ctx, s, "default", "db", bk.Status.BackupID); err != nil || !v.OK {
		t.Fatalf("the backup in MinIO does not verify: %+v %v", v, err)
	}
	waitFor(t, time.Minute, "PostgresInstance status naming the backup", func() bool {
		must(c.Get(ctx, client.ObjectKeyFromObject(inst), inst))
		return inst.Status.LastBackup == "b1" && inst.Status.FirstRecoverabilityPoint != nil
	})

	// Schedules: the pod is up (the test reports it ready, as the
	// StatefulSet controller would), and a schedule creates Backups owned
	// by the instance, which run in the pod like b1.
	must(c.Get(ctx, client.ObjectKeyFromObject(&sts), &sts))
	sts.Status.ObservedGeneration, sts.Status.Replicas, sts.Status.ReadyReplicas, sts.Status.UpdatedReplicas = sts.Generation, 1, 1, 1
	sts.Status.CurrentRevision, sts.Status.UpdateRevision = "db-1", "db-1"
	must(c.Status().Update(ctx, &sts))
	waitFor(t, time.Minute, "PostgresInstance db Running", func() bool {
		must(c.Get(ctx, client.ObjectKeyFromObject(inst), inst))
		return inst.Status.Phase == outpostv1.InstanceRunning
	})
	inst.Spec.Backup.Schedule = "@every 5s"
	must(c.Update(ctx, inst))
	var scheduled outpostv1.BackupList
	waitFor(t, 2*time.Minute, "a scheduled Backup completing", func() bool {
		must(c.List(ctx, &scheduled, client.InNamespace("default"), client.MatchingLabels{controller.LabelScheduledBy: "db"}))
		for _, b := range scheduled.Items {
			if b.Status.Phase == outpostv1.BackupFailed {
				t.Fatalf("scheduled Backup %s failed: %s\nmanager log:\n%s", b.Name, b.Status.Error, logTail())
			}
			if b.Status.Phase == outpostv1.BackupCompleted {
				if ref := metav1.GetControllerOf(&b); ref == nil || ref.Kind != "PostgresInstance" || ref.Name != "db" {
					t.Fatalf("scheduled Backup %s is not owned by its instance: %+v", b.Name, b.OwnerReferences)
				}
				return true
			}
		}
		return false
	})
	running := 0
	for _, b := range scheduled.Items {
		if b.Status.Phase == outpostv1.BackupRunning {
			running++
		}
	}
	if running > 1 {
		t.Fatalf("%d scheduled backups of db run at once", running)
	}
}
