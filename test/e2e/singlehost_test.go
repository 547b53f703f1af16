package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpostdata/outpost/test/harness"
)

func TestUpServesPgvectorAndKeepsDataAcrossRestarts(t *testing.T) {
	s := newSite(t)
	s.start()

	// The command `outpost up` printed, run as a user would paste it.
	printed := s.psqlCommand("example")
	sql := `CREATE TABLE items (id int PRIMARY KEY, embedding vector(3));
		INSERT INTO items VALUES (1, '[1,1,1]'), (2, '[2,2,2]'), (3, '[9,9,9]'), (4, '[0,0,0]');
		SELECT string_agg(id::text, ',' ORDER BY embedding <-> '[2.1,2,1.9]') FROM (SELECT * FROM items ORDER BY embedding <-> '[2.1,2,1.9]' LIMIT 3) nearest;`
	out, err := runShell(printed + " -X -A -t -v ON_ERROR_STOP=1 -c \"" + sql + "\"")
	if err != nil {
		t.Fatalf("the printed psql command failed: %v\n%s", err, out)
	}
	if got := lastLine(out); got != "2,1,4" {
		t.Fatalf("nearest neighbours of [2.1,2,1.9] = %q, want 2,1,4\n%s", got, out)
	}
	if got, want := s.psql("example", "SELECT extversion FROM pg_extension WHERE extname = 'vector'"), harness.PgvectorVersion(t); got != want {
		t.Errorf("pgvector in the app database = %q, want the installed %s", got, want)
	}
	features := strings.Replace(printed, "/app?", "/features?", 1)
	if out, err := runShell(features + " -X -A -t -c \"SELECT extname FROM pg_extension WHERE extname = 'vector'\""); err != nil || lastLine(out) != "vector" {
		t.Errorf("the example features database has no pgvector: %v\n%s", err, out)
	}

	psql := exec.Command(outpostBin, "psql", "example", "--state-dir", s.stateDir)
	psql.Stdin = strings.NewReader("SELECT 'via outpost psql: ' || count(*) FROM items;\n")
	if out, err := psql.CombinedOutput(); err != nil || !strings.Contains(string(out), "via outpost psql: 4") {
		t.Errorf("outpost psql example: %v\n%s", err, out)
	}

	table := s.outpost("get")
	if !strings.Contains(table, "example") || !strings.Contains(table, "Running") {
		t.Errorf("outpost get does not show example Running:\n%s", table)
	}
	desc := s.outpost("describe", "pgi/example")
	for _, want := range []string{"Phase:", "Running", "Ready", "True", "credentials.json"} {
		if !strings.Contains(desc, want) {
			t.Errorf("outpost describe pgi/example lacks %q:\n%s", want, desc)
		}
	}

	// Ctrl-C stops everything: no server of this site runs afterwards.
	pid := s.postmasterPID(s.instanceDataDir("example"))
	controldbPID := s.postmasterPID(filepath.Join(s.stateDir, "controldb", "data"))
	s.stop()
	for _, p := range []int{pid, controldbPID} {
		if alive(p) {
			t.Errorf("postgres pid %d still runs after Ctrl-C", p)
		}
	}

	// The next run brings the same instance back with its data.
	s.start()
	if got := s.psql("example", "SELECT count(*) FROM items"); got != "4" {
		t.Errorf("after a restart the items table holds %q rows, want 4", got)
	}
}

func TestApplyAddsAnInstanceAndDeleteStopsIt(t *testing.T) {
	s := newSite(t)
	s.start()

	manifest := filepath.Join(t.TempDir(), "second.yaml")
	os.WriteFile(manifest, []byte(`apiVersion: outpost.dev/v1alpha1
kind: PostgresInstance
metadata:
  name: second
spec:
  resources: {cpu: 500m, memory: 512Mi}
  storage: {size: 1Gi}
  extensions: [vector, pg_trgm]
`), 0o644)
	out := s.outpost("apply", "-f", manifest)
	if !strings.Contains(out, "postgresinstance/second created") {
		t.Errorf("outpost apply printed %q", out)
	}
	s.waitPhase("second", "Running", 60*time.Second)
	if got := s.psql("second", "SELECT count(*) FROM pg_extension WHERE extname IN ('vector', 'pg_trgm')"); got != "2" {
		t.Errorf("second has %s of its 2 extensions", got)
	}
	if got := s.instances()["example"].Status.Phase; got != "Running" {
		t.Errorf("example is %s after second was added", got)
	}

	pid := s.postmasterPID(s.instanceDataDir("second"))
	if !alive(pid) {
		t.Fatalf("no postgres runs for second (pid %d)", pid)
	}
	s.outpost("delete", "pgi/second")
	deadline := time.Now().Add(30 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("postgres of second (pid %d) still runs 30 s after delete", pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for {
		if _, ok := s.instances()["second"]; !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("outpost get still lists second 30 s after delete")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The default deletionPolicy, Retain, keeps the data.
	if _, err := os.Stat(filepath.Join(s.instanceDataDir("second"), "PG_VERSION")); err != nil {
		t.Errorf("second's data was not kept: %v", err)
	}
}

func TestKilledPostgresIsBackWithinTenSeconds(t *testing.T) {
	s := newSite(t)
	s.start()
	s.psql("example", "CREATE TABLE survivors (n int); INSERT INTO survivors VALUES (42)")

	pid := s.postmasterPID(s.instanceDataDir("example"))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
	killed := time.Now()
	for {
		if out, err := s.tryPsql("example", "SELECT n FROM survivors"); err == nil {
			if out != "42" {
				t.Fatalf("after the crash survivors holds %q, want 42", out)
			}
			break
		}
		if time.Since(killed) > 10*time.Second {
			t.Fatalf("example does not answer 10 s after kill -9; log:\n%s", s.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("answering again %s after kill -9", time.Since(killed).Round(time.Millisecond))
	inst := s.waitPhase("example", "Running", 10*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for inst.Status.Restarts < 1 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		inst = s.instances()["example"]
	}
	if inst.Status.Restarts != 1 {
		t.Errorf("status.restarts = %d after one crash, want 1", inst.Status.Restarts)
	}
	if desc := s.outpost("describe", "pgi/example"); !strings.Contains(desc, "Restarted") {
		t.Errorf("describe shows no Restarted event:\n%s", desc)
	}
}

func TestRestartedControllerAdoptsRunningInstances(t *testing.T) {
	s := newSite(t)
	s.start()
	s.psql("example", "CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)")
	identity := s.psql("example", "SELECT system_identifier FROM pg_control_system()")
	pid := s.postmasterPID(s.instanceDataDir("example"))

	s.crash()
	if !alive(pid) {
		t.Fatal("the instance died with the controller; it should outlive it")
	}
	s.start()
	if got := s.postmasterPID(s.instanceDataDir("example")); got != pid {
		t.Errorf("postmaster pid %d after the controller restart, want the adopted %d", got, pid)
	}
	if got := s.psql("example", "SELECT system_identifier FROM pg_control_system()"); got != identity {
		t.Errorf("system identifier changed from %s to %s: the cluster was re-initialised", identity, got)
	}
	if got := s.psql("example", "SELECT n FROM kept"); got != "7" {
		t.Errorf("kept holds %q after the controller restart, want 7", got)
	}
}

func TestBadManifestsAreRejectedWithFileAndFieldAndHarmNothing(t *testing.T) {
	s := newSite(t)
	s.start()
	s.psql("example", "CREATE TABLE still_here (n int)")

	s.writeManifest("syntax.yaml", "apiVersion: outpost.dev/v1alpha1\nkind: PostgresInstance\nmetadata: {name: broken\nspec: [\n")
	s.writeManifest("unknown-field.yaml", strings.Replace(goodInstance("typo"), "storage:", "storrage:", 1))
	s.writeManifest("zero-cpu.yaml", strings.Replace(goodInstance("zerocpu"), `cpu: "1"`, `cpu: "0"`, 1))
	s.writeManifest("bad-extension.yaml", strings.Replace(goodInstance("badext"), "[vector]", "[vector, plpython3u]", 1))

	want := []string{
		"syntax.yaml:line",
		"unknown-field.yaml:spec.storrage",
		"zero-cpu.yaml:spec.resources.cpu",
		"bad-extension.yaml:spec.extensions[1]",
	}
	deadline := time.Now().Add(10 * time.Second)
	var out string
	for {
		out = s.outpost("get")
		missing := ""
		for _, w := range want {
			if !strings.Contains(out, w) {
				missing = w
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outpost get does not report %q:\n%s", missing, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, name := range []string{"typo", "zerocpu", "badext"} {
		if strings.Contains(out, " "+name+" ") {
			t.Errorf("the rejected instance %s is listed as an instance:\n%s", name, out)
		}
	}
	waitFor(t, 10*time.Second, "the controller logging the bad file and field", func() bool {
		return strings.Contains(s.log(), "zero-cpu.yaml") && strings.Contains(s.log(), "spec.resources.cpu")
	})
	if inst := s.instances()["example"]; inst.Status.Phase != "Running" {
		t.Errorf("example is %s next to the bad manifests", inst.Status.Phase)
	}
	s.psql("example", "SELECT count(*) FROM still_here")

	// outpost apply refuses the same input and writes nothing.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(strings.Replace(goodInstance("applied"), `cpu: "1"`, `cpu: "0"`, 1)), 0o644)
	if out, err := s.tryOutpost("apply", "-f", bad); err == nil || !strings.Contains(out, "bad.yaml:spec.resources.cpu") {
		t.Errorf("outpost apply of cpu 0: err=%v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(s.stateDir, "manifests", "postgresinstance-applied.yaml")); err == nil {
		t.Error("outpost apply wrote a rejected manifest")
	}
}

func TestParameterChangesApplyWithReloadOrRestart(t *testing.T) {
	s := newSite(t)
	s.start()
	pid := s.postmasterPID(s.instanceDataDir("example"))
	path := filepath.Join(s.stateDir, "manifests", "example.yaml")
	base, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	// work_mem needs only a reload: same server process.
	s.writeManifest("example.yaml", string(base)+"  parameters:\n    work_mem: 12MB\n")
	waitFor(t, 15*time.Second, "SHOW work_mem = 12MB", func() bool {
		out, err := s.tryPsql("example", "SHOW work_mem")
		return err == nil && out == "12MB"
	})
	if got := s.postmasterPID(s.instanceDataDir("example")); got != pid {
		t.Errorf("changing work_mem restarted postgres (pid %d -> %d); a reload is enough", pid, got)
	}

	// max_connections needs a restart.
	s.writeManifest("example.yaml", string(base)+"  parameters:\n    work_mem: 12MB\n    max_connections: \"42\"\n")
	waitFor(t, 30*time.Second, "SHOW max_connections = 42", func() bool {
		out, err := s.tryPsql("example", "SHOW max_connections")
		return err == nil && out == "42"
	})
	if got := s.postmasterPID(s.instanceDataDir("example")); got == pid {
		t.Error("max_connections changed without a restart; PostgreSQL cannot do that")
	}
	if inst := s.waitPhase("example", "Running", 10*time.Second); inst.Status.Restarts != 0 {
		t.Errorf("a planned restart counted as a crash: restarts = %d", inst.Status.Restarts)
	}

	// A value PostgreSQL refuses is reported, naming the parameter, and the
	// server keeps running with the settings it had.
	s.writeManifest("example.yaml", string(base)+"  parameters:\n    work_mem: banana\n    max_connections: \"42\"\n")
	inst := s.waitPhase("example", "Failed", 15*time.Second)
	if msg := inst.Status.Conditions[0].Message; !strings.Contains(msg, "work_mem") {
		t.Errorf("the Ready condition does not name work_mem: %q", msg)
	}
	if got := s.psql("example", "SHOW work_mem"); got != "12MB" {
		t.Errorf("after a refused value work_mem = %q, want the previous 12MB", got)
	}
}

func goodInstance(name string) string {
	return `apiVersion: outpost.dev/v1alpha1
kind: PostgresInstance
metadata:
  name: ` + name + `
spec:
  resources:
    cpu: "1"
    memory: 512Mi
  storage:
    size: 1Gi
  extensions: [vector]
`
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %s", what, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestDataControllerSetsTheListenAddress(t *testing.T) {
	s := newSite(t)
	s.start()
	port := strings.Split(s.instances()["example"].Status.Endpoint, ":")[1]

	// 127.0.0.2 is loopback too, so this test serves nobody outside the host.
	s.writeManifest("site.yaml", `apiVersion: outpost.dev/v1alpha1
kind: DataController
metadata:
  name: site
spec:
  site: {name: plant-7}
  localRuntime: {listenAddress: 127.0.0.2}
`)
	waitFor(t, 30*time.Second, "example moving to 127.0.0.2", func() bool {
		inst := s.instances()["example"]
		return inst.Status.Phase == "Running" && inst.Status.Endpoint == "127.0.0.2:"+port
	})
	if got := s.psql("example", "SELECT inet_server_addr()"); got != "127.0.0.2" {
		t.Errorf("psql with the credentials reached %q, want 127.0.0.2", got)
	}
	if out, err := runShell("psql -X -h 127.0.0.1 -p " + port + " -U app app -c 'SELECT 1' </dev/null"); err == nil || !strings.Contains(out, "refused") {
		t.Errorf("the instance still answers on 127.0.0.1: %v\n%s", err, out)
	}

	os.Remove(filepath.Join(s.stateDir, "manifests", "site.yaml"))
	waitFor(t, 30*time.Second, "example moving back to 127.0.0.1", func() bool {
		inst := s.instances()["example"]
		return inst.Status.Phase == "Running" && inst.Status.Endpoint == "127.0.0.1:"+port
	})
	s.psql("example", "SELECT 1")
}

func TestHalfSavedManifestKeepsItsInstanceRunning(t *testing.T) {
	s := newSite(t)
	s.start()
	pid := s.postmasterPID(s.instanceDataDir("example"))
	path := filepath.Join(s.stateDir, "manifests", "example.yaml")
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	// An editor caught mid-save: the file exists but does not parse. The
	// instance it described must not be taken for deleted.
	s.writeManifest("example.yaml", string(good[:len(good)/2])+"\n  : [\n")
	waitFor(t, 10*time.Second, "the broken example.yaml being reported", func() bool {
		return strings.Contains(s.outpost("get"), "example.yaml:")
	})
	time.Sleep(2 * time.Second) // a few passes of the controller
	if !alive(pid) {
		t.Fatal("the instance was stopped because its manifest became unreadable")
	}
	if got := s.instances()["example"].Status.Phase; got != "Running" {
		t.Errorf("example is %q while its manifest is unreadable, want Running", got)
	}
	if table := s.outpost("get"); strings.Contains(table, "Deleting") || !strings.Contains(table, "Running") {
		t.Errorf("outpost get while the manifest is unreadable:\n%s", table)
	}

	s.writeManifest("example.yaml", string(good))
	waitFor(t, 10*time.Second, "the error clearing", func() bool {
		return !strings.Contains(s.outpost("get"), "Rejected manifests")
	})
	if got := s.postmasterPID(s.instanceDataDir("example")); got != pid {
		t.Errorf("postmaster pid changed from %d to %d across a manifest hiccup", pid, got)
	}
}
