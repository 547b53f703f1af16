package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/kuberuntime"
	"github.com/outpostdata/outpost/test/harness"
)

// TestInstanceManagerReportsTheArchiverAndRestoresDriftedSettings runs the
// pod entrypoint as a local process: without a backup section archiving is
// on into /bin/true; GET /archiver and /metrics report pg_stat_archiver; an
// archive_command set by a superuser with ALTER SYSTEM is reported as drift
// and replaced by the managed one.
func TestInstanceManagerReportsTheArchiverAndRestoresDriftedSettings(t *testing.T) {
	superPassword := ""
	p := startManager(t, func(p *managerProcess) []string {
		b, _ := json.Marshal(map[string]any{"port": p.pgPort, "database": "app", "owner": "app"})
		if err := os.WriteFile(p.configFile, b, 0o644); err != nil {
			t.Fatal(err)
		}
		superPassword = "super-" + strconv.Itoa(p.pgPort)
		return []string{"OUTPOST_SUPERUSER_PASSWORD=" + superPassword, "OUTPOST_APP_PASSWORD=app-secret"}
	})
	superSQL := func(sql string) string {
		c := exec.Command(harness.SystemBinary(t, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
			"-h", p.socketDir, "-p", strconv.Itoa(p.pgPort), "-U", "postgres", "-d", "postgres", "-c", sql)
		c.Env = append(os.Environ(), "PGPASSWORD="+superPassword, "PGCONNECT_TIMEOUT=5")
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", sql, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	type archiver struct {
		ArchiveMode   string `json:"archiveMode"`
		ArchivedCount int64  `json:"archivedCount"`
		Settings      map[string]struct {
			Value string `json:"value"`
		} `json:"settings"`
	}
	read := func() (archiver, bool) {
		var a archiver
		code, body := p.get("/archiver")
		return a, code == 200 && json.Unmarshal([]byte(body), &a) == nil
	}
	waitFor(t, 2*time.Minute, "GET /archiver answering", func() bool { _, ok := read(); return ok })
	a, _ := read()
	if a.ArchiveMode != "on" || a.Settings["archive_command"].Value != "/bin/true" {
		t.Fatalf("without a backup section: %+v; want archive_mode on into /bin/true\n%s", a, p.logTail())
	}
	superSQL("CREATE TABLE t AS SELECT 1 AS v; SELECT pg_switch_wal()")
	waitFor(t, 30*time.Second, "the finished segment counted as archived", func() bool {
		a, ok := read()
		return ok && a.ArchivedCount > 0
	})
	_, metrics := p.get("/metrics")
	for _, want := range []string{"outpost_wal_archived_total ", "outpost_wal_archive_failures_total 0", "outpost_wal_archive_pending 0"} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("/metrics lacks %q", want)
		}
	}

	superSQL("ALTER SYSTEM SET archive_command = 'cp %p /tmp/elsewhere/%f'")
	superSQL("SELECT pg_reload_conf()")
	// The controller's kubernetes runtime reads the drift from the pod and
	// the reconcile core turns it into the WALArchiving condition.
	rt := &kuberuntime.Runtime{ManagerURL: func(*outpostv1.PostgresInstance) string { return fmt.Sprintf("http://127.0.0.1:%d", p.httpPort) }}
	inst := &outpostv1.PostgresInstance{}
	inst.Namespace, inst.Name = "default", "pod"
	waitFor(t, 30*time.Second, "the drift reported by GET /archiver", func() bool {
		st, err := rt.ReadArchiver(context.Background(), inst)
		return err == nil && len(st.Drift) == 1 && st.Drift[0].Setting == "archive_command" && st.Drift[0].Found == "cp %p /tmp/elsewhere/%f"
	})
	waitFor(t, 30*time.Second, "the managed archive_command back", func() bool {
		return superSQL("SHOW archive_command") == "/bin/true"
	})
	if auto, _ := os.ReadFile(filepath.Join(p.dataDir, "postgresql.auto.conf")); strings.Contains(string(auto), "archive_command") {
		t.Fatalf("postgresql.auto.conf still sets archive_command:\n%s", auto)
	}
}
