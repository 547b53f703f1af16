package e2e

import (
	"strings"
	"testing"

	"github.com/outpostdata/outpost/test/harness"
)

// TestKubectlGetPgiShowsArchivingAndVerification checks the printer
// columns the CRD declares: what the controller writes into the
// WALArchiving and BackupVerified conditions is what `kubectl get pgi`
// shows.
func TestKubectlGetPgiShowsArchivingAndVerification(t *testing.T) {
	api := harness.StartAPIServer(t)
	kubectl(t, api, `apiVersion: outpost.dev/v1alpha1
kind: PostgresInstance
metadata:
  name: shown
  namespace: default
spec:
  resources: {cpu: "1", memory: 512Mi}
  storage: {size: 1Gi}
`, "apply", "-f", "-")
	table := kubectl(t, api, "", "get", "pgi", "shown")
	header := strings.Fields(strings.SplitN(table, "\n", 2)[0])
	if !strings.Contains(strings.Join(header, " "), "ARCHIVING VERIFIED") {
		t.Fatalf("kubectl get pgi columns: %v", header)
	}
	kubectl(t, api, "", "patch", "pgi", "shown", "--subresource=status", "--type=merge", "-p", `{"status": {"conditions": [
		{"type": "WALArchiving", "status": "False", "reason": "ArchiveFailing", "message": "archiving WAL segment 000000010000000000000004 failed", "lastTransitionTime": "2026-11-30T10:00:00Z"},
		{"type": "BackupVerified", "status": "False", "reason": "Stale", "message": "the one due at 04:00 did not run", "lastTransitionTime": "2026-11-30T10:00:00Z"}]}}`)
	table = kubectl(t, api, "", "get", "pgi", "shown")
	// Columns are found by where their header starts: empty ones (phase,
	// endpoint) leave no field of their own.
	lines := strings.Split(table, "\n")
	at := func(col string) string {
		i := strings.Index(lines[0], col)
		if i < 0 || i >= len(lines[1]) {
			return ""
		}
		return strings.Fields(lines[1][i:])[0]
	}
	cols := map[string]string{"ARCHIVING": at("ARCHIVING"), "VERIFIED": at("VERIFIED")}
	if cols["ARCHIVING"] != "ArchiveFailing" || cols["VERIFIED"] != "Stale" {
		t.Fatalf("kubectl get pgi:\n%s", table)
	}
}
