package localruntime_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/localruntime"
	"github.com/outpostdata/outpost/test/harness"
)

var outpostBin string

func TestMain(m *testing.M) { harness.RunWithOutpost(m, &outpostBin) }

// site is a local runtime whose ObjectStore "s3" is a real MinIO (or none).
type site struct {
	rt        *localruntime.Runtime
	minio     *harness.MinIO
	credsFile string
	events    *eventLog
	core      *controller.InstanceReconciler
}

// eventLog keeps events as "Type Reason: message".
type eventLog struct{ all []string }

func (e *eventLog) Event(_ runtime.Object, eventType, reason, msg string) {
	e.all = append(e.all, eventType+" "+reason+": "+msg)
}

func (e *eventLog) find(prefix string) string {
	for _, ev := range e.all {
		if strings.HasPrefix(ev, prefix) {
			return ev
		}
	}
	return ""
}

func newSite(t *testing.T, withMinIO bool) *site {
	s := &site{events: &eventLog{}}
	s.credsFile = filepath.Join(harness.TempDir(t), "creds")
	endpoint, bucket := "http://127.0.0.1:1", "backups"
	if withMinIO {
		s.minio = harness.StartMinIO(t)
		endpoint, bucket = s.minio.URL(), s.minio.Bucket
		s.writeCreds(t, s.minio.SecretKey)
	} else {
		s.writeCreds(t, "unused")
	}
	s.rt = &localruntime.Runtime{
		StateDir: harness.TempDir(t), Ports: ports{t}, Log: harness.Logger(t), Executable: outpostBin,
		ObjectStores: func(_ context.Context, ns, name string) (*outpostv1.ObjectStore, error) {
			os_ := &outpostv1.ObjectStore{}
			os_.Namespace, os_.Name = ns, name
			os_.Spec.Endpoint, os_.Spec.Bucket = endpoint, bucket
			os_.Spec.Credentials.File = s.credsFile
			return os_, nil
		},
	}
	t.Cleanup(func() { s.rt.Shutdown() })
	s.core = &controller.InstanceReconciler{Runtime: s.rt, Events: s.events, Metrics: controller.NewBackupMetrics()}
	return s
}

func (s *site) writeCreds(t *testing.T, secret string) {
	t.Helper()
	access := "unused"
	if s.minio != nil {
		access = s.minio.AccessKey
	}
	if err := os.WriteFile(s.credsFile, []byte("accessKeyID="+access+"\nsecretAccessKey="+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newInstance(name string) *outpostv1.PostgresInstance {
	inst := &outpostv1.PostgresInstance{Spec: outpostv1.PostgresInstanceSpec{
		Resources: outpostv1.InstanceResources{CPU: resource.MustParse("1"), Memory: resource.MustParse("256Mi")},
		Storage:   outpostv1.InstanceStorage{Size: resource.MustParse("64Mi")},
	}}
	inst.Namespace, inst.Name, inst.Generation = "default", name, 1
	return inst
}

func withBackup(inst *outpostv1.PostgresInstance) {
	inst.Spec.Backup = &outpostv1.BackupPolicy{ObjectStore: outpostv1.LocalObjectReference{Name: "s3"}}
}

// reconcileUntil runs the reconcile core over inst until ok, or fails
// after within.
func (s *site) reconcileUntil(t *testing.T, inst *outpostv1.PostgresInstance, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		s.core.Reconcile(context.Background(), inst)
		if ok() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not %s within %s; status %+v; events %v", what, within, inst.Status, s.events.all)
		}
		time.Sleep(time.Second)
	}
}

func (s *site) ready(t *testing.T, inst *outpostv1.PostgresInstance) {
	t.Helper()
	s.reconcileUntil(t, inst, 2*time.Minute, "Running", func() bool { return inst.Status.Phase == outpostv1.InstanceRunning })
}

// connect opens a superuser connection to inst.
func (s *site) connect(t *testing.T, inst *outpostv1.PostgresInstance) *pgx.Conn {
	t.Helper()
	dir, err := localruntime.InstanceDir(s.rt.StateDir, inst.Namespace, inst.Name)
	if err != nil {
		t.Fatal(err)
	}
	url, err := localruntime.SuperuserURL(dir, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func show(t *testing.T, conn *pgx.Conn, setting string) string {
	t.Helper()
	var v string
	if err := conn.QueryRow(context.Background(), "SELECT setting FROM pg_settings WHERE name = $1", setting).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// switchWAL writes a row and finishes the current WAL segment, returning
// its name: the next segment the archiver must archive.
func switchWAL(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS t (v int); INSERT INTO t SELECT generate_series(1, 1000)"); err != nil {
		t.Fatal(err)
	}
	var seg string
	if err := conn.QueryRow(ctx, "SELECT pg_walfile_name(pg_switch_wal())").Scan(&seg); err != nil {
		t.Fatal(err)
	}
	return seg
}

func condition(inst *outpostv1.PostgresInstance, typ string) metav1.Condition {
	if c := meta.FindStatusCondition(inst.Status.Conditions, typ); c != nil {
		return *c
	}
	return metav1.Condition{}
}

// sample returns the value of a metric the controller serves.
func sample(t *testing.T, c *controller.BackupMetrics, name string) float64 {
	t.Helper()
	v, ok := harness.MetricValue(t, c, name)
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	return v
}

func postmasterStart(t *testing.T, conn *pgx.Conn) time.Time {
	t.Helper()
	var at time.Time
	if err := conn.QueryRow(context.Background(), "SELECT pg_postmaster_start_time()").Scan(&at); err != nil {
		t.Fatal(err)
	}
	return at
}

func postmasterPID(t *testing.T, s *site, inst *outpostv1.PostgresInstance) string {
	t.Helper()
	dir, err := localruntime.InstanceDir(s.rt.StateDir, inst.Namespace, inst.Name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _, _ := strings.Cut(string(b), "\n")
	return pid
}

func TestAddingABackupPolicyReloadsWithoutRestartingPostgres(t *testing.T) {
	s := newSite(t, false)
	inst := newInstance("db")
	s.ready(t, inst)
	conn := s.connect(t, inst)
	// Archiving is on from initdb, into nowhere.
	if mode, cmd := show(t, conn, "archive_mode"), show(t, conn, "archive_command"); mode != "on" || cmd != "/bin/true" {
		t.Fatalf("without spec.backup: archive_mode %s, archive_command %q; want on and /bin/true", mode, cmd)
	}
	pid, started := postmasterPID(t, s, inst), postmasterStart(t, conn)

	withBackup(inst)
	inst.Generation++
	s.ready(t, inst)
	conn = s.connect(t, inst)
	if cmd := show(t, conn, "archive_command"); !strings.Contains(cmd, "wal-push") {
		t.Fatalf("after adding spec.backup: archive_command %q, want outpost wal-push", cmd)
	}
	if got := postmasterPID(t, s, inst); got != pid {
		t.Fatalf("postmaster PID changed from %s to %s: adding spec.backup restarted PostgreSQL", pid, got)
	}
	if got := postmasterStart(t, conn); !got.Equal(started) {
		t.Fatalf("pg_postmaster_start_time changed from %s to %s", started, got)
	}
}

func TestArchiveSettingsChangedWithALTERSYSTEMAreReportedAndRestored(t *testing.T) {
	s := newSite(t, false)
	inst := newInstance("db")
	s.ready(t, inst)
	conn := s.connect(t, inst)
	ctx := context.Background()
	for _, sql := range []string{
		"ALTER SYSTEM SET archive_command = 'cp %p /tmp/elsewhere/%f'",
		"ALTER SYSTEM SET restore_command = 'cp /tmp/elsewhere/%f %p'",
		"SELECT pg_reload_conf()",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// Control: the superuser's value is in effect before Outpost looks.
	deadline := time.Now().Add(10 * time.Second)
	for show(t, s.connect(t, inst), "archive_command") != "cp %p /tmp/elsewhere/%f" {
		if time.Now().After(deadline) {
			t.Fatal("ALTER SYSTEM SET archive_command did not take effect")
		}
		time.Sleep(100 * time.Millisecond)
	}

	s.core.Reconcile(ctx, inst)
	c := condition(inst, outpostv1.ConditionWALArchiving)
	if c.Status != metav1.ConditionFalse || c.Reason != controller.ReasonSettingDrift ||
		!strings.Contains(c.Message, "archive_command") || !strings.Contains(c.Message, "restore_command") || !strings.Contains(c.Message, "postgresql.auto.conf") {
		t.Fatalf("WALArchiving after ALTER SYSTEM: %+v", c)
	}
	if e := s.events.find("Warning " + controller.ReasonSettingDrift); !strings.Contains(e, "cp %p /tmp/elsewhere/%f") {
		t.Fatalf("no drift event naming the value found: %v", s.events.all)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		fresh := s.connect(t, inst)
		if show(t, fresh, "archive_command") == "/bin/true" && show(t, fresh, "restore_command") == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("managed values not restored: archive_command %q, restore_command %q", show(t, fresh, "archive_command"), show(t, fresh, "restore_command"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	dir, err := localruntime.InstanceDir(s.rt.StateDir, "default", "db")
	if err != nil {
		t.Fatal(err)
	}
	auto, err := os.ReadFile(filepath.Join(dir, "data", "postgresql.auto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(auto), "archive_command") || strings.Contains(string(auto), "restore_command") {
		t.Fatalf("postgresql.auto.conf still sets them:\n%s", auto)
	}
	// Restored, the instance without spec.backup reports nothing more.
	s.core.Reconcile(ctx, inst)
	if c := meta.FindStatusCondition(inst.Status.Conditions, outpostv1.ConditionWALArchiving); c != nil {
		t.Fatalf("WALArchiving after the restore: %+v", c)
	}
}

func TestWALArchivingTurnsFalseWhenTheStoreFailsAndRecoversByItself(t *testing.T) {
	s := newSite(t, true)
	inst := newInstance("db")
	withBackup(inst)
	s.ready(t, inst)
	conn := s.connect(t, inst)
	first := switchWAL(t, conn)
	s.reconcileUntil(t, inst, time.Minute, "archiving "+first, func() bool {
		c := condition(inst, outpostv1.ConditionWALArchiving)
		// Archived, and nothing waits.
		return c.Status == metav1.ConditionTrue && strings.HasPrefix(c.Message, "last archived "+first) && !strings.Contains(c.Message, "wait")
	})

	faults := []struct {
		name         string
		break_, heal func()
	}{
		{"wrong credentials", func() { s.writeCreds(t, "not-the-secret") }, func() { s.writeCreds(t, s.minio.SecretKey) }},
		{"a stopped MinIO", func() { s.minio.Stop() }, func() { s.minio.Start(t) }},
	}
	for _, f := range faults {
		s.reconcileUntil(t, inst, time.Minute, "nothing waiting before "+f.name, func() bool {
			c := condition(inst, outpostv1.ConditionWALArchiving)
			return c.Status == metav1.ConditionTrue && !strings.Contains(c.Message, "wait")
		})
		failuresBefore := sample(t, s.core.Metrics, "outpost_wal_archive_failures_total")
		f.break_()
		// The runtime writes the new credentials into backup.json on its
		// next pass; the segment finished after that fails.
		s.core.Reconcile(context.Background(), inst)
		seg := switchWAL(t, conn)
		start := time.Now()
		s.reconcileUntil(t, inst, time.Minute, "WALArchiving False with "+f.name, func() bool {
			c := condition(inst, outpostv1.ConditionWALArchiving)
			return c.Status == metav1.ConditionFalse && c.Reason == controller.ReasonArchiveFailing
		})
		t.Logf("%s: WALArchiving False after %s", f.name, time.Since(start).Round(time.Second))
		c := condition(inst, outpostv1.ConditionWALArchiving)
		if !strings.Contains(c.Message, seg) {
			t.Fatalf("%s: the condition does not name the segment %s: %s", f.name, seg, c.Message)
		}
		if e := s.events.find("Warning " + controller.ReasonArchiveFailing); e == "" {
			t.Fatalf("%s: no Warning event: %v", f.name, s.events.all)
		}
		if got := sample(t, s.core.Metrics, "outpost_wal_archive_failures_total"); got <= failuresBefore {
			t.Fatalf("%s: outpost_wal_archive_failures_total %v, was %v", f.name, got, failuresBefore)
		}
		if got := sample(t, s.core.Metrics, "outpost_wal_archiving_ok"); got != 0 {
			t.Fatalf("%s: outpost_wal_archiving_ok = %v", f.name, got)
		}

		f.heal()
		start = time.Now()
		// PostgreSQL's archiver retries on its own, at the latest a minute
		// after its last failure.
		s.reconcileUntil(t, inst, 3*time.Minute, "WALArchiving True again after "+f.name, func() bool {
			return condition(inst, outpostv1.ConditionWALArchiving).Status == metav1.ConditionTrue
		})
		t.Logf("%s: recovered %s after the store returned", f.name, time.Since(start).Round(time.Second))
		var sysid string
		if err := conn.QueryRow(context.Background(), "SELECT system_identifier::text FROM pg_control_system()").Scan(&sysid); err != nil {
			t.Fatal(err)
		}
		if _, err := s.minio.Client.StatObject(context.Background(), s.minio.Bucket, "default/db/"+sysid+"/wal/"+seg, minio.StatObjectOptions{}); err != nil {
			t.Fatalf("%s: segment %s not in the bucket after recovery: %v", f.name, seg, err)
		}
	}
}
