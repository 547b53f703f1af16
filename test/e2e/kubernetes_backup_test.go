package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/jackc/pgx/v5"

	"github.com/outpostdata/outpost/backup"
	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/instancemanager"
	"github.com/outpostdata/outpost/controller/kuberuntime"
	"github.com/outpostdata/outpost/controller/kubesource"
	"github.com/outpostdata/outpost/postgres"
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
	mgr, err := kubesource.NewManager(kubesource.Options{
		Config: api.Config, Log: harness.Logger(t), MinRequeue: 10 * time.Second,
		NewRuntime: func(cl client.Client, s *runtime.Scheme) (controller.Runtime, error) {
			return &kuberuntime.Runtime{Client: cl, Reader: c, Scheme: s, Log: slog.New(slog.DiscardHandler), Pods: kuberuntime.PodOptions{Image: "outpost/instance:test"},
				// The Service's DNS name does not resolve without a
				// cluster; the pod's HTTP port is on loopback here.
				ManagerURL: func(*outpostv1.PostgresInstance) string { mu.Lock(); defer mu.Unlock(); return managerURL }}, nil
		},
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
	if cond := readyOf(missing); cond.Status != metav1.ConditionFalse || cond.Reason != kubesource.ReasonBucketMissing || !strings.Contains(cond.Message, `bucket "missing-bucket" does not exist`) {
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
			c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "db-backup-token"}, &secret) == nil
	})
	env := map[string]string{}
	for _, e := range sts.Spec.Template.Spec.Containers[0].Env {
		if ref := e.ValueFrom.SecretKeyRef; ref != nil {
			env[e.Name] = ref.Name + "/" + ref.Key
		}
	}
	for name, want := range map[string]string{"OUTPOST_BACKUP_TOKEN": "db-backup-token/backup-token"} {
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
	pod := startInstancePod(t, c, "db")
	base, logTail := pod.base, pod.logTail
	token := pod.env[instancemanager.EnvBackupToken]
	if len(token) < 16 {
		t.Fatalf("backup token %q is too short", token)
	}
	pod.waitReady(t)

	// A superuser in the instance reads the postmaster's environment, and
	// the instance manager's (the pod's process 1, which in a pod runs as
	// the same user): no bucket key is there, though archiving has them,
	// as files.
	super := pod.connect(t)
	_, err = super.Exec(ctx, `CREATE TEMP TABLE environ (line text);
		COPY environ FROM PROGRAM 'tr "\0" "\n" < /proc/$(cut -d" " -f4 /proc/$PPID/stat)/environ'`)
	must(err)
	var envLines int
	var leaked bool
	must(super.QueryRow(ctx, "SELECT count(*), coalesce(bool_or(line LIKE '%' || $1 || '%' OR line LIKE '%' || $2 || '%'), false) FROM environ", m.SecretKey, m.AccessKey).Scan(&envLines, &leaked))
	managerEnv, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pod.pid))
	must(err)
	if envLines == 0 || leaked || bytes.Contains(managerEnv, []byte(m.SecretKey)) {
		t.Errorf("the postmaster's environment (%d lines) has a bucket key: %v; the instance manager's: %v", envLines, leaked, bytes.Contains(managerEnv, []byte(m.SecretKey)))
	}

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

	// An incremental Backup runs in the pod too, on top of b1's backup.
	inc := &outpostv1.Backup{ObjectMeta: metav1.ObjectMeta{Name: "b2", Namespace: "default"}, Spec: outpostv1.BackupSpec{Instance: outpostv1.LocalObjectReference{Name: "db"}, Type: outpostv1.BackupIncremental}}
	must(c.Create(ctx, inc))
	waitFor(t, 3*time.Minute, "Backup b2 finishing", func() bool {
		must(c.Get(ctx, client.ObjectKeyFromObject(inc), inc))
		return inc.Status.Phase == outpostv1.BackupCompleted || inc.Status.Phase == outpostv1.BackupFailed
	})
	if inc.Status.Phase != outpostv1.BackupCompleted || inc.Status.Type != outpostv1.BackupIncremental || inc.Status.Parent != bk.Status.BackupID {
		t.Fatalf("incremental Backup b2: %+v, want an incremental on top of %s\nmanager log:\n%s", inc.Status, bk.Status.BackupID, logTail())
	}
	if v, err := backup.Verify(ctx, s, "default", "db", inc.Status.BackupID); err != nil || !v.OK || len(v.Chain) != 2 {
		t.Fatalf("the incremental backup in MinIO does not verify with its chain: %+v %v", v, err)
	}

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
	// The controller writes the instance's status as it goes (the WAL
	// archiver's included, now the pod answers), so a spec change retries
	// on a conflict as any client must.
	setSchedule := func(schedule string) {
		t.Helper()
		must(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(inst), inst); err != nil {
				return err
			}
			inst.Spec.Backup.Schedule = schedule
			return c.Update(ctx, inst)
		}))
	}
	setSchedule("@every 5s")
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
	// Each is named after its slot, and the slot the instance's status
	// records as taken has its Backup: it is created before the status
	// is written.
	must(c.Get(ctx, client.ObjectKeyFromObject(inst), inst))
	must(c.List(ctx, &scheduled, client.InNamespace("default"), client.MatchingLabels{controller.LabelScheduledBy: "db"}))
	if inst.Status.Backups == nil || inst.Status.Backups.LastScheduleTime == nil {
		t.Fatalf("db's status records no slot taken: %+v", inst.Status.Backups)
	}
	last := controller.ScheduledBackupName("db", outpostv1.BackupFull, inst.Status.Backups.LastScheduleTime.Time)
	found := false
	for _, b := range scheduled.Items {
		if !regexp.MustCompile(`^db-full-\d{8}t\d{6}z$`).MatchString(b.Name) {
			t.Fatalf("scheduled Backup %s is not named after its slot", b.Name)
		}
		found = found || b.Name == last
	}
	if !found {
		t.Fatalf("no Backup %s of the slot db's status records as taken", last)
	}

	// Restore: rows written after the backups reach the archive as WAL;
	// a new instance with spec.bootstrap.recovery restores db in its pod
	// to the end of WAL, another to a time between two phases of rows.
	setSchedule("")
	conn := pod.connect(t)
	sqlExec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	sqlExec(`CREATE TABLE rows (phase int, n int)`)
	sqlExec(`INSERT INTO rows SELECT 1, g FROM generate_series(1, 500) g`)
	var phase1 time.Time
	must(conn.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&phase1))
	// metav1.Time keeps whole seconds: the target is the next one, and
	// phase 2 starts after it.
	target := phase1.Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(target.Add(1500 * time.Millisecond)))
	sqlExec(`INSERT INTO rows SELECT 2, g FROM generate_series(1, 300) g`)
	var lastWAL string
	must(conn.QueryRow(ctx, `SELECT pg_walfile_name(pg_switch_wal())`).Scan(&lastWAL))
	waitFor(t, time.Minute, "WAL "+lastWAL+" archived", func() bool {
		var archived *string
		must(conn.QueryRow(ctx, `SELECT last_archived_wal FROM pg_stat_archiver`).Scan(&archived))
		return archived != nil && *archived >= lastWAL
	})

	restored := func(name string, targetTime *metav1.Time) *instancePod {
		t.Helper()
		must(c.Create(ctx, &outpostv1.PostgresInstance{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: outpostv1.PostgresInstanceSpec{
			Resources: outpostv1.InstanceResources{CPU: resource.MustParse("1"), Memory: resource.MustParse("512Mi")},
			Storage:   outpostv1.InstanceStorage{Size: resource.MustParse("1Gi")},
			Bootstrap: outpostv1.Bootstrap{Recovery: &outpostv1.RecoveryBootstrap{
				Source: "db", ObjectStore: outpostv1.LocalObjectReference{Name: "minio"}, TargetTime: targetTime,
			}},
		}}))
		return startInstancePod(t, c, name)
	}
	counts := func(p *instancePod) map[int]int {
		t.Helper()
		rows, err := p.connect(t).Query(ctx, `SELECT phase, count(*) FROM rows GROUP BY phase`)
		must(err)
		out := map[int]int{}
		for rows.Next() {
			var phase, n int
			must(rows.Scan(&phase, &n))
			out[phase] = n
		}
		must(rows.Err())
		return out
	}
	whole := restored("db-copy", nil)
	if whole.cfg.Recovery == nil || whole.cfg.Recovery.Instance != "db" || whole.cfg.Recovery.CredentialsDir == "" {
		t.Fatalf("db-copy's pod: recovery section %+v, env %v", whole.cfg.Recovery, whole.env)
	}
	whole.waitReady(t)
	if got := counts(whole); got[1] != 500 || got[2] != 300 || len(got) != 2 {
		t.Errorf("db-copy restored to the end of WAL has rows per phase %v, want 500 and 300\nlog:\n%s", got, whole.logTail())
	}
	pitr := restored("db-pitr", &metav1.Time{Time: target})
	pitr.waitReady(t)
	if got := counts(pitr); got[1] != 500 || len(got) != 1 {
		t.Errorf("db-pitr restored to %s has rows per phase %v, want only phase 1's 500\nlog:\n%s", target, got, pitr.logTail())
	}

	// A restore that fails (no backups of the source) ends the manager
	// before it serves /readyz and leaves no data directory behind, so the
	// pod's next start tries again.
	must(c.Create(ctx, &outpostv1.PostgresInstance{ObjectMeta: metav1.ObjectMeta{Name: "db-nosource", Namespace: "default"}, Spec: outpostv1.PostgresInstanceSpec{
		Resources: outpostv1.InstanceResources{CPU: resource.MustParse("1"), Memory: resource.MustParse("512Mi")},
		Storage:   outpostv1.InstanceStorage{Size: resource.MustParse("1Gi")},
		Bootstrap: outpostv1.Bootstrap{Recovery: &outpostv1.RecoveryBootstrap{Source: "never-backed-up", ObjectStore: outpostv1.LocalObjectReference{Name: "minio"}}},
	}}))
	failed := startInstancePod(t, c, "db-nosource")
	select {
	case <-failed.exited:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the manager of db-nosource still runs\nlog:\n%s", failed.logTail())
	}
	if failed.exitErr == nil || !strings.Contains(failed.logTail(), "never-backed-up") {
		t.Errorf("db-nosource: exit %v, log:\n%s", failed.exitErr, failed.logTail())
	}
	for _, d := range []string{failed.dataDir, failed.dataDir + ".restoring"} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("a failed restore left %s: %v", d, err)
		}
	}
}

// instancePod is one `outpost instance run` started as the kubelet would
// start the pod of an instance's StatefulSet: with the ConfigMap's
// instance.json and the container's environment taken from the Secrets it
// names. Only the port is changed, to a free one on loopback.
type instancePod struct {
	name, base, dataDir, logPath string
	tlsDir, socketDir            string
	pid                          int
	cfg                          instancemanager.Config
	env                          map[string]string
	exited                       chan struct{}
	exitErr                      error // set when exited is closed
}

func startInstancePod(t *testing.T, c client.Client, name string) *instancePod {
	t.Helper()
	ctx := context.Background()
	p := &instancePod{name: name, env: map[string]string{}, exited: make(chan struct{})}
	var sts appsv1.StatefulSet
	var cm corev1.ConfigMap
	waitFor(t, time.Minute, "the objects of instance "+name, func() bool {
		return c.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, &sts) == nil &&
			c.Get(ctx, client.ObjectKey{Namespace: "default", Name: name + "-config"}, &cm) == nil
	})
	if err := json.Unmarshal([]byte(cm.Data[instancemanager.ConfigFileName]), &p.cfg); err != nil {
		t.Fatal(err)
	}
	environ := os.Environ()
	for _, e := range sts.Spec.Template.Spec.Containers[0].Env {
		ref := e.ValueFrom.SecretKeyRef
		if ref == nil {
			continue
		}
		var secret corev1.Secret
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: ref.Name}, &secret); err != nil {
			t.Fatalf("pod env %s: %v", e.Name, err)
		}
		p.env[e.Name] = string(secret.Data[ref.Key])
		environ = append(environ, e.Name+"="+p.env[e.Name])
	}
	dir := harness.TempDir(t)
	p.dataDir = filepath.Join(dir, "volume", "pgdata")
	if err := os.MkdirAll(filepath.Dir(p.dataDir), 0o755); err != nil {
		t.Fatal(err)
	}
	// The Secret volumes, as the kubelet mounts them, each in a directory
	// of its own here: the configuration's paths are moved with them.
	mounts := map[string]string{}
	for _, m := range sts.Spec.Template.Spec.Containers[0].VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	moved := map[string]string{}
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Secret == nil {
			continue
		}
		var secret corev1.Secret
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: v.Secret.SecretName}, &secret); err != nil {
			t.Fatalf("pod volume %s: %v", v.Name, err)
		}
		local := filepath.Join(dir, "mounts", v.Name)
		if err := os.MkdirAll(local, 0o755); err != nil {
			t.Fatal(err)
		}
		items := v.Secret.Items
		if len(items) == 0 {
			for k := range secret.Data {
				items = append(items, corev1.KeyToPath{Key: k, Path: k})
			}
		}
		for _, it := range items {
			if err := os.WriteFile(filepath.Join(local, it.Path), secret.Data[it.Key], 0o440); err != nil {
				t.Fatal(err)
			}
		}
		moved[mounts[v.Name]] = local
	}
	cfg := p.cfg
	cfg.Port = harness.FreePort(t)
	p.cfg.Port = cfg.Port
	b, _ := json.Marshal(cfg)
	for from, to := range moved {
		b = bytes.ReplaceAll(b, []byte(`"`+from+`/`), []byte(`"`+to+`/`))
		b = bytes.ReplaceAll(b, []byte(`"`+from+`"`), []byte(`"`+to+`"`))
	}
	if err := json.Unmarshal(b, &p.cfg); err != nil {
		t.Fatal(err)
	}
	configFile := filepath.Join(dir, "instance.json")
	if err := os.WriteFile(configFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	p.tlsDir = moved["/etc/outpost-tls"]
	p.socketDir = filepath.Join(dir, "run")
	httpAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	p.base = "http://" + httpAddr
	cmd := exec.Command(outpostBin, "instance", "run", "--data-dir", p.dataDir, "--config", configFile,
		"--listen-address", "127.0.0.1", "--http-addr", httpAddr, "--tls-dir", p.tlsDir, "--socket-dir", p.socketDir)
	cmd.Env = environ
	p.logPath = filepath.Join(dir, "manager.log")
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.pid = cmd.Process.Pid
	go func() { p.exitErr = cmd.Wait(); logf.Close(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			cmd.Process.Kill()
			<-p.exited
		}
		(&site{}).stopStrayServersIn(p.dataDir)
	})
	return p
}

func (p *instancePod) logTail() string { b, _ := os.ReadFile(p.logPath); return string(b) }

// waitReady waits for /readyz, and fails at once if the manager exits.
func (p *instancePod) waitReady(t *testing.T) {
	t.Helper()
	waitFor(t, 3*time.Minute, "the instance manager of "+p.name+" ready", func() bool {
		select {
		case <-p.exited:
			t.Fatalf("the instance manager of %s exited: %v\nlog:\n%s", p.name, p.exitErr, p.logTail())
		default:
		}
		resp, err := http.Get(p.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// connect opens the application database as the superuser, with the
// password from the instance's Secret, through the pod's socket: the only
// place that password is accepted.
func (p *instancePod) connect(t *testing.T) *pgx.Conn {
	t.Helper()
	u := postgres.ConnURL{Host: p.socketDir, Port: p.cfg.Port, User: postgres.Superuser,
		Password: p.env[instancemanager.EnvSuperuserPassword], Database: p.cfg.Database}
	conn, err := pgx.Connect(context.Background(), u.String())
	if err != nil {
		t.Fatalf("connect to %s: %v", p.name, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
