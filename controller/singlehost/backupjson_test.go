package singlehost

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpostdata/outpost/test/harness"
)

// outpostBin is the outpost binary, built for tests that run `outpost up`:
// PostgreSQL runs it as archive_command, so it cannot be this test binary.
var outpostBin string

func TestMain(m *testing.M) { harness.RunWithOutpost(m, &outpostBin) }

// TestBackupJSONIsRewrittenOnlyWhenItsObjectStoreChanges runs `outpost up`
// with an instance that archives to ObjectStore s3. Passes that change
// nothing leave its backup.json as it is (same inode, same mtime), also
// while objectstore.yaml is half-saved, when the instance stays Running on
// the last accepted ObjectStore rather than failing to find one; a change
// of the ObjectStore rewrites it with the new bucket.
func TestBackupJSONIsRewrittenOnlyWhenItsObjectStoreChanges(t *testing.T) {
	sd := StateDir{Root: filepath.Join(harness.TempDir(t), "state")}
	if err := os.MkdirAll(sd.Manifests(), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(sd.Manifests(), name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	store := func(bucket string) string {
		return strings.Replace(objectStoreYAML(bucket, "site-a"), "/nonexistent/creds", filepath.Join(sd.Root, "creds"), 1)
	}
	if err := os.WriteFile(filepath.Join(sd.Root, "creds"), []byte("accessKeyID=unused\nsecretAccessKey=unused\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	write("objectstore.yaml", store("first"))
	write("db.yaml", `apiVersion: outpost.dev/v1alpha1
kind: PostgresInstance
metadata: {name: db}
spec:
  resources: {cpu: "1", memory: 256Mi}
  storage: {size: 1Gi}
  backup: {objectStore: {name: s3}}
`)
	up := startUp(t, sd)

	dir, err := sd.Instance("default", "db")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "backup.json")
	type version struct {
		ino   uint64
		mtime time.Time
		data  string
	}
	current := func() version {
		t.Helper()
		fi, err := os.Stat(file)
		if err != nil {
			t.Fatalf("%v; log:\n%s", err, up.log())
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return version{fi.Sys().(*syscall.Stat_t).Ino, fi.ModTime(), string(b)}
	}
	up.waitRunning(t, "db")
	first := current()
	if !strings.Contains(first.data, `"bucket": "first"`) {
		t.Fatalf("backup.json does not name bucket first:\n%s", first.data)
	}

	// Passes over an unchanged directory.
	up.passes(t)
	if got := current(); got != first {
		t.Errorf("backup.json was rewritten by passes that changed nothing: inode %d mtime %s, was %d %s", got.ino, got.mtime, first.ino, first.mtime)
	}

	// objectstore.yaml half-saved: the last accepted ObjectStore stays in
	// force, and backup.json and the instance with it.
	good := store("first")
	write("objectstore.yaml", good[:len(good)/2]+"\n  : [\n")
	up.waitGet(t, "objectstore.yaml:", true)
	up.passes(t)
	if got := current(); got != first {
		t.Errorf("backup.json was rewritten while objectstore.yaml was half-saved: inode %d mtime %s, was %d %s", got.ino, got.mtime, first.ino, first.mtime)
	}
	if inst := up.instance(t, "db"); inst.Status.Phase != "Running" || strings.Contains(inst.conditions(), "ObjectStore") {
		t.Errorf("while objectstore.yaml is half-saved db is %s: %s; want Running on the last accepted ObjectStore", inst.Status.Phase, inst.conditions())
	}
	write("objectstore.yaml", good)
	up.waitGet(t, "objectstore.yaml:", false)
	up.passes(t)
	if got := current(); got != first {
		t.Errorf("backup.json was rewritten when objectstore.yaml was saved unchanged")
	}

	// A changed ObjectStore is a new backup.json, written atomically (a
	// new file renamed over the old one).
	write("objectstore.yaml", store("second"))
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(current().data, `"bucket": "second"`) {
		if time.Now().After(deadline) {
			t.Fatalf("backup.json does not name bucket second 30 s after the ObjectStore changed:\n%s\nlog:\n%s", current().data, up.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := current(); got.ino == first.ino {
		t.Errorf("backup.json was changed in place (inode %d), not replaced", got.ino)
	}
}

// upProcess is `outpost up` serving a state directory.
type upProcess struct {
	sd      StateDir
	cmd     *exec.Cmd
	logFile string
	done    chan struct{}
}

func startUp(t *testing.T, sd StateDir) *upProcess {
	t.Helper()
	up := &upProcess{sd: sd, logFile: filepath.Join(filepath.Dir(sd.Root), "outpost-up.log"), done: make(chan struct{})}
	logf, err := os.Create(up.logFile)
	if err != nil {
		t.Fatal(err)
	}
	up.cmd = exec.Command(outpostBin, "up", "--state-dir", sd.Root, "--first-port", strconv.Itoa(harness.FreePort(t)))
	up.cmd.Stdout, up.cmd.Stderr = logf, logf
	if err := up.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		up.cmd.Wait()
		logf.Close()
		close(up.done)
	}()
	t.Cleanup(func() {
		up.cmd.Process.Signal(os.Interrupt)
		select {
		case <-up.done:
		case <-time.After(90 * time.Second):
			up.cmd.Process.Kill()
			<-up.done
			t.Errorf("outpost up did not stop within 90 s of Ctrl-C; log:\n%s", up.log())
		}
	})
	return up
}

func (up *upProcess) log() string {
	b, _ := os.ReadFile(up.logFile)
	return string(b)
}

// outpost runs a command against the state directory.
func (up *upProcess) outpost(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(outpostBin, append(args, "--state-dir", up.sd.Root)...).CombinedOutput()
	if err != nil {
		t.Fatalf("outpost %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// upInstance is what `outpost get instances -o json` says of one.
type upInstance struct {
	Metadata struct{ Name string }
	Status   struct {
		Phase      string
		Conditions []struct{ Type, Status, Reason, Message string }
	}
}

func (i upInstance) conditions() string {
	var s []string
	for _, c := range i.Status.Conditions {
		s = append(s, c.Type+"="+c.Status+" "+c.Reason+": "+c.Message)
	}
	return strings.Join(s, "; ")
}

func (up *upProcess) instance(t *testing.T, name string) upInstance {
	t.Helper()
	var list struct{ Items []upInstance }
	select {
	case <-up.done:
		t.Fatalf("outpost up exited; log:\n%s", up.log())
	default:
	}
	out := up.outpost(t, "get", "instances", "-o", "json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("outpost get -o json: %v\n%s", err, out)
	}
	for _, i := range list.Items {
		if i.Metadata.Name == name {
			return i
		}
	}
	return upInstance{}
}

func (up *upProcess) waitRunning(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		inst := up.instance(t, name)
		if inst.Status.Phase == "Running" {
			return
		}
		if get := up.outpost(t, "get"); strings.Contains(get, "Rejected manifests") {
			t.Fatalf("manifests rejected:\n%s", get)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %q after 3 minutes: %s; log:\n%s", name, inst.Status.Phase, inst.conditions(), up.log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitGet waits until `outpost get` does (or no longer does) mention s.
func (up *upProcess) waitGet(t *testing.T, s string, present bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Contains(up.outpost(t, "get"), s) != present {
		if time.Now().After(deadline) {
			t.Fatalf("outpost get does not (or still does) mention %q after 30 s; log:\n%s", s, up.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// passes makes sure that at least two full passes have run since it was
// called: it drops a broken marker.yaml, waits until `outpost get` reports
// it, removes it and waits until the report is gone.
func (up *upProcess) passes(t *testing.T) {
	t.Helper()
	marker := filepath.Join(up.sd.Manifests(), "marker.yaml")
	if err := os.WriteFile(marker, []byte("kind: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	up.waitGet(t, "marker.yaml", true)
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}
	up.waitGet(t, "marker.yaml", false)
}
