package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpostdata/outpost/test/harness"
)

// TestKubectlAppliedDataControllerMetersAndExportVerifies runs the real
// binary as the Kubernetes controller (local runtime, controldb in a real
// PostgreSQL): a DataController and a PostgresInstance applied with kubectl
// give the signing key Secret, the DataController's usage status and
// metrics, and `outpost usage key|show|export --source kubernetes` read the
// same key and ledger; the exported file verifies against the key.
func TestKubectlAppliedDataControllerMetersAndExportVerifies(t *testing.T) {
	api := harness.StartAPIServer(t)
	pg := harness.StartPostgres(t)
	s := newSite(t)
	kubectl(t, api, "", "create", "namespace", "outpost-system")
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	ctrl := startKubeController(t, api, "--runtime", "local", "--state-dir", s.stateDir, "--first-port", strconv.Itoa(s.port),
		"--controldb-url", pg.URL("postgres"), "--controller-namespace", "outpost-system", "--metrics-bind-address", metricsAddr)

	kubectl(t, api, `apiVersion: outpost.dev/v1alpha1
kind: DataController
metadata: {name: site, namespace: default}
spec:
  site: {name: plant-7, labels: {region: north}}
  metering: {interval: 1s}
---
apiVersion: outpost.dev/v1alpha1
kind: PostgresInstance
metadata: {name: vec, namespace: default}
spec:
  resources: {cpu: "1", memory: 512Mi}
  storage: {size: 1Gi}
  deletionPolicy: Delete
`, "apply", "-f", "-")
	waitFor(t, 3*time.Minute, "pgi/vec Running and dc/site Ready", func() bool {
		phase, _ := tryKubectl(t, api, "", "get", "pgi", "vec", "-o", "jsonpath={.status.phase}")
		ready, _ := tryKubectl(t, api, "", "get", "dc", "site", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="UsageExported")].reason}`)
		return phase == "Running" && ready == "True Fresh"
	})
	if t.Failed() {
		t.Fatalf("controller log:\n%s", ctrl.log())
	}
	fingerprint := kubectl(t, api, "", "get", "dc", "site", "-o", "jsonpath={.status.signingKeyFingerprint}")
	if !strings.HasPrefix(fingerprint, "SHA256:") {
		t.Fatalf("status.signingKeyFingerprint = %q", fingerprint)
	}
	if keys := kubectl(t, api, "", "get", "secret", "-n", "outpost-system", "outpost-usage-signing-key", "-o", "jsonpath={.data}"); !strings.Contains(keys, "signing.key") {
		t.Errorf("signing key Secret data keys: %s", keys)
	}

	kube := []string{"--source", "kubernetes", "--kubeconfig", api.Kubeconfig, "--controller-namespace", "outpost-system", "--controldb-url", pg.URL("postgres")}
	run := func(args ...string) (string, string) {
		t.Helper()
		cmd := exec.Command(outpostBin, append(args, kube...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("outpost %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
		}
		return strings.TrimSpace(string(out)), stderr.String()
	}
	pub, info := run("usage", "key")
	if !strings.HasPrefix(pub, "ed25519:") || !strings.Contains(info, fingerprint) {
		t.Errorf("outpost usage key: %q, %q; want the key whose fingerprint is %s", pub, info, fingerprint)
	}

	// The ledger has the instance at one vCore, under the CR's uid; no
	// hour has closed yet, so `usage show` names the site and no records.
	uid := kubectl(t, api, "", "get", "pgi", "vec", "-o", "jsonpath={.metadata.uid}")
	var name string
	var mvc int64
	if err := pg.Connect(t, "postgres").QueryRow(context.Background(), `SELECT i.name, v.milli_vcores FROM usage_instances i
		JOIN usage_intervals v USING (uid) WHERE i.uid = $1 AND v.end_at IS NULL`, uid).Scan(&name, &mvc); err != nil || name != "vec" || mvc != 1000 {
		t.Errorf("ledger for uid %s: %q at %d milli-vCores (%v); want vec at 1000", uid, name, mvc, err)
	}
	if out, _ := run("usage", "show"); !strings.Contains(out, "Usage of site plant-7") {
		t.Errorf("outpost usage show --source kubernetes:\n%s", out)
	}

	month := time.Now().UTC().Format("2006-01")
	file := filepath.Join(harness.TempDir(t), "usage.outpost-usage")
	_, info = run("usage", "export", "--month", month, "-o", file)
	if !strings.Contains(info, "partial") {
		t.Errorf("export of the current month not marked partial: %s", info)
	}
	verify := exec.Command(outpostBin, "usage", "verify", file, "--public-key", pub)
	if out, err := verify.CombinedOutput(); err != nil {
		t.Fatalf("outpost usage verify: %v\n%s", err, out)
	}
	// The export counts: status shows it.
	waitFor(t, 30*time.Second, "status.lastExportTime", func() bool {
		out, _ := tryKubectl(t, api, "", "get", "dc", "site", "-o", "jsonpath={.status.lastExportTime}")
		return out != ""
	})

	// The manager's metrics endpoint serves the freshness gauges.
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `outpost_usage_freshness{condition="UsageExported",reason="Fresh"} 1`) ||
		!strings.Contains(string(body), "outpost_usage_backlog_records 0") {
		t.Errorf("metrics lack the usage gauges:\n%s", grepLines(string(body), "outpost_usage"))
	}
	// The key is never logged.
	if log := ctrl.log(); strings.Contains(log, "PRIVATE KEY") {
		t.Errorf("the controller log contains the private key")
	}
	kubectl(t, api, "", "delete", "pgi", "vec", "--timeout=90s")
	if t.Failed() {
		fmt.Fprintln(os.Stderr, ctrl.log())
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
