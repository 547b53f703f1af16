package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"

	"github.com/outpostdata/outpost/controller/localruntime"
	"github.com/outpostdata/outpost/controller/safepath"
	"github.com/outpostdata/outpost/test/harness"
)

// backupStatus is what `outpost get backups -o json` says of one Backup.
func (s *site) backupStatus(name string) map[string]any {
	s.t.Helper()
	return s.statusOf("backups", name)
}

// statusOf is the status `outpost get KIND -o json` shows for one object.
func (s *site) statusOf(kind, name string) map[string]any {
	s.t.Helper()
	var list struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Status map[string]any `json:"status"`
		} `json:"items"`
	}
	out := s.outpost("get", kind, "-o", "json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		s.t.Fatalf("outpost get %s -o json: %v\n%s", kind, err, out)
	}
	for _, b := range list.Items {
		if b.Metadata.Name == name {
			return b.Status
		}
	}
	return nil
}

func TestBackupResourceCLIAndRestoreThroughTheBinary(t *testing.T) {
	// Over TLS with a private CA, as a site's own object store would be.
	m := harness.StartMinIOTLS(t)
	s := newSite(t)
	s.start()
	s.writeObjectStore(m, "site-backups", true)
	s.writeManifest("src.yaml", goodInstance("src")+`  backup:
    objectStore: {name: minio}
    retention: {count: 2}
`)
	s.waitPhase("src", "Running", 2*time.Minute)
	s.psql("src", "CREATE TABLE items AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g")

	// A Backup resource runs in the controller and reports its status.
	s.writeManifest("b1.yaml", `apiVersion: outpost.dev/v1alpha1
kind: Backup
metadata:
  name: b1
spec:
  instance: {name: src}
`)
	began := time.Now()
	waitFor(t, 2*time.Minute, "Backup b1 completing", func() bool {
		st := s.backupStatus("b1")
		if st["phase"] == "Failed" {
			t.Fatalf("backup b1 failed: %v\n%s", st["error"], s.log())
		}
		if st["phase"] == "Completed" {
			return true
		}
		if time.Since(began) > 100*time.Second {
			t.Fatalf("Backup b1 status %v\nget:\n%s\nlog:\n%s", st, s.outpost("get", "all"), s.log())
		}
		return false
	})
	st := s.backupStatus("b1")
	for _, f := range []string{"backupID", "startLSN", "stopLSN", "location", "startedAt", "stoppedAt"} {
		if st[f] == nil || st[f] == "" {
			t.Errorf("Backup b1 status lacks %s: %v", f, st)
		}
	}

	// The CLI makes another, lists and verifies it.
	s.psql("src", "INSERT INTO items VALUES (0, 'after the first backup')")
	out := s.outpost("backup", "create", "src")
	if !strings.Contains(out, "completed") {
		t.Fatalf("outpost backup create: %s", out)
	}
	var list []struct {
		ID        string `json:"id"`
		Completed bool   `json:"completed"`
	}
	if err := json.Unmarshal([]byte(s.outpost("backup", "list", "src", "-o", "json")), &list); err != nil || len(list) != 2 {
		t.Fatalf("outpost backup list: %v %+v", err, list)
	}
	if out := s.outpost("backup", "verify", "src", list[1].ID, "--restore"); !strings.Contains(out, "every checksum matches") || !strings.Contains(out, "pass amcheck") || !strings.Contains(out, "20001 rows") {
		t.Fatalf("outpost backup verify --restore: %s", out)
	}
	// Verifying the backup Backup b1 made records the result in its status.
	if out := s.outpost("backup", "verify", "src", st["backupID"].(string), "--restore"); !strings.Contains(out, "recorded in the status of Backup b1") {
		t.Fatalf("outpost backup verify of b1's backup: %s", out)
	}
	v, _ := s.backupStatus("b1")["verification"].(map[string]any)
	if v["checksumsOK"] != true || v["restored"] != true || !strings.Contains(fmt.Sprint(v["message"]), "pass amcheck") || v["time"] == nil {
		t.Fatalf("Backup b1 status.verification after verify --restore: %v", v)
	}
	// The instance's status names its last backup and how far back a
	// restore can go.
	pgi := s.statusOf("pgi", "src")
	if pgi["lastBackup"] != "b1" || pgi["lastBackupTime"] == nil || pgi["firstRecoverabilityPoint"] == nil {
		t.Fatalf("PostgresInstance src status after Backup b1: %v", pgi)
	}

	// A target time before the first backup is refused, naming the earliest.
	if out, err := s.tryOutpost("backup", "restore", "src", "--to", "early", "--target-time", "2001-01-01T00:00:00Z"); err == nil || !strings.Contains(out, "earliest time a restore can target is") {
		t.Fatalf("restore before the first backup: %v\n%s", err, out)
	}

	// Restore to the end of WAL through the CLI: a new instance.
	s.outpost("backup", "restore", "src", "--to", "copy")
	s.waitPhase("copy", "Running", 3*time.Minute)
	if got, want := s.psql("copy", "SELECT count(*) FROM items"), s.psql("src", "SELECT count(*) FROM items"); got != want || got != "20001" {
		t.Fatalf("restored copy has %s rows, source %s, want 20001", got, want)
	}
}

func TestScheduledEncryptedBackupsThroughOutpostUp(t *testing.T) {
	m := harness.StartMinIO(t)
	s := newSite(t)
	// On one host the Secret enc-key is the file secrets/default/enc-key/age.key,
	// which outpost backup key generate writes; it prints the recipient.
	out := strings.Fields(s.outpost("backup", "key", "generate", "enc-key"))
	recipient := out[len(out)-1]
	keyFile := filepath.Join(s.stateDir, "secrets", "default", "enc-key", "age.key")
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 || !strings.HasPrefix(recipient, "age1") {
		t.Fatalf("backup key generate: %v %v, printed %q", fi, err, recipient)
	}
	if out, err := s.tryOutpost("backup", "key", "generate", "enc-key"); err == nil || !strings.Contains(out, "never overwritten") {
		t.Fatalf("a second backup key generate of enc-key: %v\n%s", err, out)
	}
	s.start()
	s.writeObjectStore(m, "encrypted-backups", true)
	s.writeManifest("enc.yaml", goodInstance("enc")+`  backup:
    objectStore: {name: minio}
    schedule: "@every 10s"
    retention: {count: 2}
    encryption:
      keySecret: {name: enc-key}
`)
	s.waitPhase("enc", "Running", 2*time.Minute)
	const marker = "PLAINTEXT-MARKER-e2e-41c9"
	s.psql("enc", "CREATE TABLE secrets AS SELECT g AS id, '"+marker+"' || g AS v FROM generate_series(1, 5000) g")

	// The schedule creates Backup objects that get and the manifests
	// directory show, and never runs two of one instance at once.
	var done []string
	waitFor(t, 3*time.Minute, "two scheduled Backups completing", func() bool {
		var list struct {
			Items []struct {
				Metadata struct {
					Name   string            `json:"name"`
					Labels map[string]string `json:"labels"`
				} `json:"metadata"`
				Status struct {
					Phase string `json:"phase"`
					Error string `json:"error"`
				} `json:"status"`
			} `json:"items"`
		}
		if err := json.Unmarshal([]byte(s.outpost("get", "backups", "-o", "json")), &list); err != nil {
			t.Fatal(err)
		}
		running := 0
		done = done[:0]
		for _, b := range list.Items {
			if b.Metadata.Labels["outpost.dev/scheduled-by"] != "enc" || !strings.HasPrefix(b.Metadata.Name, "enc-") {
				t.Fatalf("Backup %s was not created by enc's schedule: %+v", b.Metadata.Name, b.Metadata)
			}
			switch b.Status.Phase {
			case "Running":
				running++
			case "Failed":
				t.Fatalf("scheduled Backup %s failed: %s\n%s", b.Metadata.Name, b.Status.Error, s.log())
			case "Completed":
				done = append(done, b.Metadata.Name)
			}
		}
		if running > 1 {
			t.Fatalf("%d backups of enc run at once", running)
		}
		return len(done) >= 2
	})
	if _, err := os.Stat(filepath.Join(s.stateDir, "manifests", "backup-"+done[len(done)-1]+".yaml")); err != nil {
		t.Fatalf("scheduled Backup %s has no manifest: %v", done[len(done)-1], err)
	}
	pgi := s.statusOf("pgi", "enc")
	if !strings.HasPrefix(fmt.Sprint(pgi["lastBackup"]), "enc-") || pgi["firstRecoverabilityPoint"] == nil {
		t.Fatalf("PostgresInstance enc status: %v", pgi)
	}

	// Every object in the bucket, base backup or WAL, is age-encrypted
	// (the manifests and the lease, JSON, hold no table data), and none
	// holds the marker. The WAL of the inserts was archived before the
	// first backup ended.
	ctx := context.Background()
	objects, wal := 0, 0
	for o := range m.Client.ListObjects(ctx, "encrypted-backups", minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		obj, err := m.Client.GetObject(ctx, "encrypted-backups", o.Key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(obj)
		obj.Close()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), marker) || strings.Contains(string(b), "PLAINTEXT-MARKER") {
			t.Fatalf("object %s holds the plaintext marker", o.Key)
		}
		if !strings.HasSuffix(o.Key, ".json") && !strings.HasPrefix(string(b), "age-encryption.org/v1\n") {
			t.Fatalf("object %s is not age-encrypted", o.Key)
		}
		objects++
		if strings.Contains(o.Key, "/wal/") {
			wal++
		}
	}
	if objects < 5 || wal == 0 {
		t.Fatalf("only %d objects in the bucket, %d of them WAL", objects, wal)
	}

	// A restore without the key fails and says so in the instance's status.
	s.writeManifest("nokey.yaml", goodInstance("nokey")+`  bootstrap:
    recovery: {source: enc, objectStore: {name: minio}}
`)
	var msg string
	waitFor(t, 2*time.Minute, "the keyless restore failing with a message", func() bool {
		for _, c := range s.instances()["nokey"].Status.Conditions {
			if c.Type == "Ready" {
				msg = c.Message
			}
		}
		return strings.Contains(msg, "encrypted with age and no key was given")
	})
	if !strings.Contains(msg, "spec.backup.encryption") {
		t.Fatalf("keyless restore message does not say what to set: %s", msg)
	}
	// With the key, outpost backup restore brings every row back.
	s.outpost("backup", "restore", "enc", "--to", "copy")
	s.waitPhase("copy", "Running", 3*time.Minute)
	if got := s.psql("copy", "SELECT count(*) FROM secrets"); got != "5000" {
		t.Fatalf("restored copy has %s rows, want 5000", got)
	}

	// Meanwhile the schedule went on and retention (count 2) deleted older
	// backups; their scheduled Backups went with them, so every Completed
	// Backup names a backup that exists.
	var report string
	waitFor(t, time.Minute, "scheduled Backups matching the kept backups", func() bool {
		var ids []struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal([]byte(s.outpost("backup", "list", "enc", "-o", "json")), &ids); err != nil {
			t.Fatal(err)
		}
		kept := map[string]bool{}
		for _, b := range ids {
			kept[b.ID] = true
		}
		var list struct {
			Items []struct {
				Metadata struct{ Name string } `json:"metadata"`
				Status   struct {
					Phase    string `json:"phase"`
					BackupID string `json:"backupID"`
				} `json:"status"`
			} `json:"items"`
		}
		if err := json.Unmarshal([]byte(s.outpost("get", "backups", "-o", "json")), &list); err != nil {
			t.Fatal(err)
		}
		completed, stale := 0, 0
		for _, b := range list.Items {
			if b.Status.Phase == "Completed" {
				completed++
				if !kept[b.Status.BackupID] {
					stale++
				}
			}
		}
		report = fmt.Sprintf("%d completed Backups, %d naming deleted backups, %d backups kept", completed, stale, len(ids))
		return stale == 0 && completed <= 2 && len(done) >= 2
	})
	t.Log(report)
}

func TestKilledBackupsAreNeverCompletedAndTheNextOneSucceeds(t *testing.T) {
	m := harness.StartMinIO(t)
	s := newSite(t)
	s.start()
	s.writeObjectStore(m, m.Bucket, false)
	s.writeManifest("src.yaml", goodInstance("src")+`  backup:
    objectStore: {name: minio}
`)
	s.waitPhase("src", "Running", 2*time.Minute)
	// Several 32 MiB objects' worth of data, so there are points to kill at.
	s.psql("src", "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g+1)::text) AS v FROM generate_series(1, 1500000) g")
	ctx := context.Background()
	baseObjects := func() int {
		n := 0
		for o := range m.Client.ListObjects(ctx, m.Bucket, minio.ListObjectsOptions{Prefix: "default/src/", Recursive: true}) {
			if o.Err == nil && strings.Contains(o.Key, "/base/") {
				n++
			}
		}
		return n
	}
	completed := func() int {
		var list []struct {
			Completed bool `json:"completed"`
		}
		if err := json.Unmarshal([]byte(s.outpost("backup", "list", "src", "-o", "json")), &list); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, b := range list {
			if b.Completed {
				n++
			}
		}
		return n
	}

	// kill -9 `outpost backup create` at several points, each proven to
	// have been reached: once PostgreSQL shows the backup's session has run
	// pg_backup_start, once the first object is stored, and once a few are.
	backupStarted := func() bool {
		return s.backupStarted("src")
	}
	for _, point := range []struct {
		name    string
		objects int
	}{{"after pg_backup_start", -1}, {"after the first object", 1}, {"after three objects", 3}} {
		before := baseObjects()
		cmd := exec.Command(outpostBin, "backup", "create", "src", "--state-dir", s.stateDir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if point.objects < 0 {
			for !backupStarted() {
				select {
				case err := <-exited:
					t.Fatalf("backup %s: it finished (%v) before it could be killed", point.name, err)
				case <-time.After(10 * time.Millisecond):
				}
			}
		} else {
			for baseObjects() < before+point.objects {
				select {
				case err := <-exited:
					t.Fatalf("backup %s: it finished (%v) before it could be killed", point.name, err)
				case <-time.After(20 * time.Millisecond):
				}
			}
		}
		cmd.Process.Kill()
		<-exited
		if n := completed(); n != 0 {
			t.Fatalf("after kill -9 %s, %d backups are listed as completed", point.name, n)
		}
	}

	// kill -9 the controller while a Backup runs: after the restart the
	// Backup says it was interrupted, and never stays Running. MinIO is
	// frozen meanwhile, so the backup is surely still running at the kill.
	m.Pause()
	t.Cleanup(m.Resume)
	s.writeManifest("crash.yaml", `apiVersion: outpost.dev/v1alpha1
kind: Backup
metadata:
  name: during-crash
spec:
  instance: {name: src}
`)
	waitFor(t, time.Minute, "Backup during-crash running", func() bool { return s.backupStatus("during-crash")["phase"] == "Running" })
	s.crash()
	m.Resume()
	s.start()
	waitFor(t, time.Minute, "Backup during-crash failing as interrupted", func() bool {
		st := s.backupStatus("during-crash")
		if st["phase"] == "Completed" {
			t.Fatalf("a Backup cut short by kill -9 of the controller is Completed: %v", st)
		}
		return st["phase"] == "Failed" && strings.Contains(fmt.Sprint(st["error"]), "controller stopped during the backup")
	})
	if n := completed(); n != 0 {
		t.Fatalf("after kill -9 of the controller, %d backups are listed as completed", n)
	}

	// The next backup succeeds and is the only completed one.
	if out := s.outpost("backup", "create", "src"); !strings.Contains(out, "completed") {
		t.Fatalf("backup after the kills: %s", out)
	}
	if n := completed(); n != 1 {
		t.Fatalf("%d completed backups after the kills and one good backup, want 1", n)
	}
}

func TestCLIBackupScheduleAndRetentionNeverOverlap(t *testing.T) {
	m := harness.StartMinIO(t)
	s := newSite(t)
	s.start()
	s.writeObjectStore(m, m.Bucket, false)
	spec := goodInstance("src") + `  backup:
    objectStore: {name: minio}
    retention: {count: 2}
`
	s.writeManifest("src.yaml", spec)
	s.waitPhase("src", "Running", 2*time.Minute)
	s.psql("src", "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 300000) g")
	s.outpost("backup", "create", "src")

	// A CLI backup, frozen (SIGSTOP) once PostgreSQL shows it started: it
	// holds the instance's lease.
	cli := exec.Command(outpostBin, "backup", "create", "src", "--state-dir", s.stateDir)
	var cliOut strings.Builder
	cli.Stdout, cli.Stderr = &cliOut, &cliOut
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cli.Wait() }()
	t.Cleanup(func() { cli.Process.Signal(syscall.SIGCONT); cli.Process.Kill() })
	waitFor(t, time.Minute, "the CLI backup running pg_backup_start", func() bool {
		select {
		case err := <-exited:
			t.Fatalf("the CLI backup ended (%v) before it could be frozen: %s", err, cliOut.String())
		default:
		}
		return s.backupStarted("src")
	})
	cli.Process.Signal(syscall.SIGSTOP)

	// Meanwhile the schedule fires, and retention is run by hand: both are
	// refused, naming the running backup.
	s.writeManifest("src.yaml", spec+`    schedule: "@every 5s"
`)
	busy := "another backup, retention or delete of this instance is running"
	if out, err := s.tryOutpost("backup", "prune", "src"); err == nil || !strings.Contains(out, busy) {
		t.Fatalf("prune while a CLI backup runs: %v\n%s", err, out)
	}
	waitFor(t, time.Minute, "a scheduled Backup refused while the CLI backup runs", func() bool {
		for _, st := range s.backupStatuses() {
			if st.Phase == "Completed" {
				t.Fatalf("a scheduled backup completed while the CLI backup held the lease")
			}
			if st.Phase == "Failed" && strings.Contains(st.Error, busy) {
				return true
			}
		}
		return false
	})

	// Let the CLI backup go on: it completes, and so do scheduled ones
	// after it, each followed by retention.
	cli.Process.Signal(syscall.SIGCONT)
	if err := <-exited; err != nil || !strings.Contains(cliOut.String(), "completed") {
		t.Fatalf("the CLI backup after SIGCONT: %v\n%s", err, cliOut.String())
	}
	waitFor(t, 2*time.Minute, "a scheduled Backup completing after the CLI backup", func() bool {
		for _, st := range s.backupStatuses() {
			if st.Phase == "Completed" {
				return true
			}
		}
		return false
	})
	s.writeManifest("src.yaml", spec)

	// No completed backup misses an object.
	var list []struct {
		ID        string `json:"id"`
		Completed bool   `json:"completed"`
	}
	if err := json.Unmarshal([]byte(s.outpost("backup", "list", "src", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	for _, b := range list {
		if !b.Completed {
			continue
		}
		out, err := s.tryOutpost("backup", "verify", "src", b.ID)
		if err != nil && strings.Contains(out, "does not exist") {
			continue // deleted by retention since the list
		}
		if err != nil || !strings.Contains(out, "every checksum matches") {
			t.Fatalf("completed backup %s: %v\n%s", b.ID, err, out)
		}
	}
}

// backupStarted reports whether PostgreSQL shows an outpost backup of
// instance name that has called pg_backup_start: its session's last query
// is that call or one after it (the checkpoint's timeline, the databases'
// identities, which it shows while it copies the files, or the stop). It
// reads pg_stat_activity as the superuser, the role that sees every
// session's query.
func (s *site) backupStarted(name string) bool {
	s.t.Helper()
	u, err := localruntime.SuperuserURL(filepath.Join(s.stateDir, "instances", "default", name), "postgres")
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		s.t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'outpost backup'
		AND (query LIKE '%pg_backup_start%' OR query LIKE '%pg_control_checkpoint%' OR query LIKE '%xmin::text FROM pg_database%' OR query LIKE '%pg_backup_stop%')`).Scan(&n); err != nil {
		s.t.Fatal(err)
	}
	return n > 0
}

// backupPhase is the phase and error of a Backup.
type backupPhase struct {
	Phase string `json:"phase"`
	Error string `json:"error"`
}

// backupStatuses are the phases of every Backup, as outpost get shows them.
func (s *site) backupStatuses() []backupPhase {
	s.t.Helper()
	var list struct {
		Items []struct {
			Status backupPhase `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(s.outpost("get", "backups", "-o", "json")), &list); err != nil {
		s.t.Fatal(err)
	}
	var out []backupPhase
	for _, b := range list.Items {
		out = append(out, b.Status)
	}
	return out
}

// writeObjectStore writes a credentials file for m and the manifest of the
// ObjectStore "minio" that uses it; a TLS server's CA goes into the Secret
// minio-ca, a file on one host.
func (s *site) writeObjectStore(m *harness.MinIO, bucket string, createBucket bool) {
	s.t.Helper()
	creds := filepath.Join(harness.TempDir(s.t), "minio.credentials")
	if err := os.WriteFile(creds, []byte("accessKeyID="+m.AccessKey+"\nsecretAccessKey="+m.SecretKey+"\n"), 0o600); err != nil {
		s.t.Fatal(err)
	}
	ca := ""
	if m.CAFile != "" {
		file, err := localruntime.SecretFile(s.stateDir, "default", safepath.Part{Field: "spec.caSecret.name", Value: "minio-ca"}, "ca.crt")
		if err != nil {
			s.t.Fatal(err)
		}
		// Directories the server account can pass through: wal-push,
		// run by postgres, reads the bundle.
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			s.t.Fatal(err)
		}
		if err := os.WriteFile(file, m.CAPEM, 0o644); err != nil {
			s.t.Fatal(err)
		}
		ca = "  caSecret: {name: minio-ca}\n"
	}
	s.writeManifest("store.yaml", fmt.Sprintf(`apiVersion: outpost.dev/v1alpha1
kind: ObjectStore
metadata:
  name: minio
spec:
  endpoint: %s
  bucket: %s
  createBucket: %t
%s  credentials:
    file: %s
`, m.URL(), bucket, createBucket, ca, creds))
}
