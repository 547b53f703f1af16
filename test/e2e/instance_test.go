package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpostdata/outpost/postgres"
	"github.com/outpostdata/outpost/test/harness"
)

// TestInstanceManagerRunsPostgresServesHealthAndStopsCleanly runs the pod
// entrypoint as a local process, as the kubelet would run it: first start
// with initdb, readiness from a real connection, metrics, recovery from a
// killed postgres, a configuration change picked up from the mounted file,
// and a clean shutdown on SIGTERM.
func TestInstanceManagerRunsPostgresServesHealthAndStopsCleanly(t *testing.T) {
	var writeConfig func(databases ...string)
	appPassword := ""
	p := startManager(t, func(p *managerProcess) []string {
		appPassword = "app-" + strconv.Itoa(p.pgPort) + "-secret"
		writeConfig = func(databases ...string) {
			b, _ := json.Marshal(map[string]any{"port": p.pgPort, "database": "app", "owner": "app",
				"databases": databases, "extensions": []string{"vector"}, "parameters": map[string]string{"work_mem": "8MB"}})
			if err := os.WriteFile(p.configFile+".tmp", b, 0o644); err != nil {
				t.Fatal(err)
			}
			// kubelet updates a mounted ConfigMap by an atomic swap, too.
			if err := os.Rename(p.configFile+".tmp", p.configFile); err != nil {
				t.Fatal(err)
			}
		}
		writeConfig()
		return []string{"OUTPOST_SUPERUSER_PASSWORD=super-" + strconv.Itoa(p.pgPort), "OUTPOST_APP_PASSWORD=" + appPassword}
	})
	waitFor(t, 2*time.Minute, "/readyz 200", func() bool { code, _ := p.get("/readyz"); return code == 200 })
	if t.Failed() {
		t.Fatalf("manager log:\n%s", p.logTail())
	}
	if code, body := p.get("/livez"); code != 200 {
		t.Errorf("/livez = %d %s", code, body)
	}

	psql := func(db, sql string) (string, error) {
		uri := postgres.ConnURL{Host: "127.0.0.1", Port: p.pgPort, User: "app", Database: db, RootCert: p.caFile}
		c := exec.Command(harness.SystemBinary(t, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", uri.String(), "-c", sql)
		c.Env = append(os.Environ(), "PGPASSWORD="+appPassword, "PGCONNECT_TIMEOUT=5")
		out, err := c.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := psql("app", "SELECT extversion FROM pg_extension WHERE extname = 'vector'; SHOW work_mem"); err != nil || out != harness.PgvectorVersion(t)+"\n8MB" {
		t.Errorf("the application role sees: %v\n%s", err, out)
	}

	// A renewed certificate in the mounted Secret is served after the
	// manager's next look, with a reload: the restart count below stays 0.
	servedSerial := func() string {
		cfg, err := pgx.ParseConfig(postgres.ConnURL{Host: "127.0.0.1", Port: p.pgPort, User: "app", Password: appPassword, Database: "app", RootCert: p.caFile}.String())
		if err != nil {
			t.Fatal(err)
		}
		var serial string
		cfg.TLSConfig.VerifyConnection = func(cs tls.ConnectionState) error {
			serial = cs.PeerCertificates[0].SerialNumber.String()
			return nil
		}
		c, err := pgx.ConnectConfig(context.Background(), cfg)
		if err != nil {
			t.Fatalf("connect with verify-full: %v", err)
		}
		c.Close(context.Background())
		return serial
	}
	before := servedSerial()
	p.writeCert(t)
	waitFor(t, 30*time.Second, "the renewed certificate served", func() bool { return servedSerial() != before })

	_, metrics := p.get("/metrics")
	for _, want := range []string{"outpost_instance_up 1", "outpost_instance_ready 1", "outpost_instance_restarts_total 0", `outpost_instance_database_size_bytes{database="app"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// A postgres killed under it comes back; the metrics count it.
	pidFile := filepath.Join(p.dataDir, "postmaster.pid")
	b, _ := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	if !alive(pid) {
		t.Fatalf("no postgres runs (postmaster.pid %d)", pid)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	waitFor(t, 30*time.Second, "postgres back after SIGKILL", func() bool {
		_, m := p.get("/metrics")
		code, _ := p.get("/readyz")
		return code == 200 && strings.Contains(m, "outpost_instance_restarts_total 1")
	})

	// The controller changes the ConfigMap; the manager applies it.
	writeConfig("features")
	waitFor(t, 30*time.Second, "database features created", func() bool {
		out, err := psql("features", "SELECT extversion FROM pg_extension WHERE extname = 'vector'")
		return err == nil && out == harness.PgvectorVersion(t)
	})

	// SIGTERM: postgres shuts down cleanly and the manager exits 0.
	b, _ = os.ReadFile(pidFile)
	pid, _ = strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("instance manager still running 60 s after SIGTERM; log:\n%s", p.logTail())
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM; log:\n%s", code, p.logTail())
	}
	if alive(pid) {
		t.Errorf("postgres pid %d survived the manager", pid)
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("postmaster.pid left behind: postgres did not shut down cleanly")
	}
	if strings.Contains(p.logTail(), appPassword) {
		t.Errorf("the application password appears in the log")
	}
}

// stopStrayServersIn stops, by its postmaster.pid, a server left running in
// dataDir by a test that failed half-way.
func (s *site) stopStrayServersIn(dataDir string) {
	if pid := s.postmasterPID(dataDir); alive(pid) {
		syscall.Kill(pid, syscall.SIGQUIT)
		for i := 0; i < 50 && alive(pid); i++ {
			time.Sleep(100 * time.Millisecond)
		}
		if alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
