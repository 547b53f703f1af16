package e2e

import (
	"fmt"
	"net"
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

// kubeController is a running `outpost controller --source kubernetes`.
type kubeController struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
}

// startKubeController runs the real binary against an apiserver and stops
// it with SIGTERM when the test ends, checking that it exits cleanly.
func startKubeController(t *testing.T, api *harness.APIServer, args ...string) *kubeController {
	t.Helper()
	dir := harness.TempDir(t)
	c := &kubeController{logPath: filepath.Join(dir, "controller.log"), done: make(chan struct{})}
	logf, err := os.Create(c.logPath)
	if err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(outpostBin, append([]string{"controller", "--source", "kubernetes", "--kubeconfig", api.Kubeconfig, "--log-level", "debug"}, args...)...)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start outpost controller: %v", err)
	}
	go func() { c.cmd.Wait(); logf.Close(); close(c.done) }()
	t.Cleanup(func() {
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
			if code := c.cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("outpost controller exited with %d after SIGTERM; log:\n%s", code, c.log())
			}
		case <-time.After(90 * time.Second):
			c.cmd.Process.Kill()
			<-c.done
			t.Errorf("outpost controller did not stop within 90 s of SIGTERM")
		}
	})
	return c
}

func (c *kubeController) log() string {
	b, _ := os.ReadFile(c.logPath)
	return string(b)
}

func kubectl(t *testing.T, api *harness.APIServer, stdin string, args ...string) string {
	t.Helper()
	out, err := tryKubectl(t, api, stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func tryKubectl(t *testing.T, api *harness.APIServer, stdin string, args ...string) (string, error) {
	cmd := exec.Command(harness.SystemBinary(t, "kubectl"), append([]string{"--kubeconfig", api.Kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestKubectlAppliedInstanceRunsAsLocalPostgresWithPgvector is the
// end-to-end proof of the controller-runtime path: the Kubernetes source
// with the local runtime turns a PostgresInstance applied with kubectl into
// a real postgres whose endpoint the CR's status names.
func TestKubectlAppliedInstanceRunsAsLocalPostgresWithPgvector(t *testing.T) {
	api := harness.StartAPIServer(t)
	s := newSite(t)
	ctrl := startKubeController(t, api, "--runtime", "local", "--state-dir", s.stateDir, "--first-port", strconv.Itoa(s.port))

	kubectl(t, api, `apiVersion: outpost.dev/v1alpha1
kind: PostgresInstance
metadata: {name: vec, namespace: default}
spec:
  resources: {cpu: "1", memory: 512Mi}
  storage: {size: 1Gi}
  extensions: [vector]
  deletionPolicy: Delete
`, "apply", "-f", "-")

	waitFor(t, 3*time.Minute, "pgi/vec Running", func() bool {
		out, _ := tryKubectl(t, api, "", "get", "pgi", "vec", "-o", "jsonpath={.status.phase}")
		return out == "Running"
	})
	if t.Failed() {
		t.Fatalf("controller log:\n%s", ctrl.log())
	}

	endpoint := kubectl(t, api, "", "get", "pgi", "vec", "-o", "jsonpath={.status.endpoint}")
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("status.endpoint = %q, want 127.0.0.1:PORT", endpoint)
	}
	// The printer columns tell the truth too.
	if table := kubectl(t, api, "", "get", "pgi"); !strings.Contains(table, "Running") || !strings.Contains(table, endpoint) {
		t.Errorf("kubectl get pgi:\n%s", table)
	}
	gen := kubectl(t, api, "", "get", "pgi", "vec", "-o", "jsonpath={.metadata.generation} {.status.observedGeneration} {.status.conditions[?(@.type==\"Ready\")].status} {.metadata.finalizers}")
	if f := strings.Fields(gen); len(f) != 4 || f[0] != f[1] || f[2] != "True" || !strings.Contains(f[3], "outpost.dev/instance") {
		t.Errorf("generation, observedGeneration, Ready, finalizers = %q", gen)
	}
	events := kubectl(t, api, "", "get", "events", "--field-selector", "involvedObject.name=vec", "-o", "jsonpath={.items[*].reason}")
	if !strings.Contains(events, "Running") {
		t.Errorf("events of pgi/vec: %q, want a Running event", events)
	}

	// psql at the endpoint runs a pgvector nearest-neighbour query.
	pid := s.postmasterPID(s.instanceDataDir("vec"))
	if !alive(pid) {
		t.Fatalf("no postgres process runs for vec (postmaster.pid %d)", pid)
	}
	dir := filepath.Join(s.stateDir, "instances", "default", "vec")
	psql := exec.Command(harness.SystemBinary(t, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-h", host, "-p", port, "-U", "app", "-d", "app", "-c", `
CREATE TABLE items (name text PRIMARY KEY, embedding vector(3));
INSERT INTO items VALUES ('origin', '[0,0,0]'), ('near', '[1,1,1]'), ('middle', '[3,3,3]'), ('far', '[10,10,10]');
SELECT name FROM items ORDER BY embedding <-> '[2.9,3,3.1]' LIMIT 1;`)
	psql.Env = append(os.Environ(), "PGPASSFILE="+filepath.Join(dir, "pgpass"), "PGCONNECT_TIMEOUT=5")
	out, err := psql.CombinedOutput()
	if err != nil || lastLine(string(out)) != "middle" {
		t.Fatalf("kNN query at %s: %v\n%s", endpoint, err, out)
	}

	// A FeatureStore CR on the instance gets its tables, queryable with
	// plain SQL by the application role.
	kubectl(t, api, `apiVersion: outpost.dev/v1alpha1
kind: FeatureStore
metadata: {name: products, namespace: default}
spec:
  instance: {name: vec}
  database: features
  dimensions: 3
  features: [{name: colour, type: text}]
`, "apply", "-f", "-")
	waitFor(t, time.Minute, "featurestore/products Ready", func() bool {
		out, _ := tryKubectl(t, api, "", "get", "featurestore", "products", "-o", "jsonpath={.status.phase}")
		return out == "Ready"
	})
	table := kubectl(t, api, "", "get", "featurestore", "products", "-o", "jsonpath={.status.table}")
	query := exec.Command(harness.SystemBinary(t, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-h", host, "-p", port, "-U", "app", "-d", "features", "-c",
		"SELECT count(*) FROM "+table+" WHERE colour IS NULL ORDER BY 1 LIMIT 1")
	query.Env = psql.Env
	if out, err := query.CombinedOutput(); err != nil || lastLine(string(out)) != "0" {
		t.Errorf("plain SQL on the feature store table %q: %v\n%s", table, err, out)
	}

	// Deleting the CR runs the finalizer: the server stops and, with
	// deletionPolicy Delete, its data goes.
	kubectl(t, api, "", "delete", "pgi", "vec", "--timeout=90s")
	if alive(pid) {
		t.Errorf("postgres pid %d still runs after kubectl delete", pid)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("instance directory %s still exists after delete with deletionPolicy Delete (%v)", dir, err)
	}
	if out, err := tryKubectl(t, api, "", "get", "pgi", "vec"); err == nil {
		t.Errorf("pgi/vec still exists after delete:\n%s", out)
	}
	if t.Failed() {
		fmt.Println(ctrl.log())
	}
}
