package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
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
	dir := harness.TempDir(t)
	dataDir := filepath.Join(dir, "volume", "pgdata")
	if err := os.MkdirAll(filepath.Dir(dataDir), 0o755); err != nil {
		t.Fatal(err)
	}
	configFile := filepath.Join(dir, "instance.json")
	pgPort, httpPort := harness.FreePort(t), harness.FreePort(t)
	writeConfig := func(databases ...string) {
		b, _ := json.Marshal(map[string]any{"port": pgPort, "database": "app", "owner": "app",
			"databases": databases, "extensions": []string{"vector"}, "parameters": map[string]string{"work_mem": "8MB"}})
		if err := os.WriteFile(configFile+".tmp", b, 0o644); err != nil {
			t.Fatal(err)
		}
		// kubelet updates a mounted ConfigMap by an atomic swap, too.
		if err := os.Rename(configFile+".tmp", configFile); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig()

	// The instance's TLS Secret, mounted, as the controller fills it.
	tlsDir := filepath.Join(dir, "tls")
	ca, err := postgres.NewCA("site", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	serverNames := postgres.CertRequest{CommonName: "db", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}
	writeCert := func() {
		cert, key, err := ca.Issue(serverNames, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		for name, data := range map[string][]byte{"ca.crt": ca.CertPEM, "tls.crt": cert, "tls.key": key} {
			if err := os.WriteFile(filepath.Join(tlsDir, name+".tmp"), data, 0o440); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(tlsDir, name+".tmp"), filepath.Join(tlsDir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Mkdir(tlsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeCert()
	caFile := filepath.Join(tlsDir, "ca.crt")

	appPassword := "app-" + strconv.Itoa(pgPort) + "-secret"
	cmd := exec.Command(outpostBin, "instance", "run", "--data-dir", dataDir, "--config", configFile,
		"--listen-address", "127.0.0.1", "--http-addr", fmt.Sprintf("127.0.0.1:%d", httpPort), "--reload-interval", "1s",
		"--tls-dir", tlsDir, "--socket-dir", filepath.Join(dir, "run"))
	cmd.Env = append(os.Environ(), "OUTPOST_SUPERUSER_PASSWORD=super-"+strconv.Itoa(pgPort), "OUTPOST_APP_PASSWORD="+appPassword)
	logPath := filepath.Join(dir, "manager.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	logTail := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
		(&site{}).stopStrayServersIn(dataDir)
	})

	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor(t, 2*time.Minute, "/readyz 200", func() bool { code, _ := get("/readyz"); return code == 200 })
	if t.Failed() {
		t.Fatalf("manager log:\n%s", logTail())
	}
	if code, body := get("/livez"); code != 200 {
		t.Errorf("/livez = %d %s", code, body)
	}

	psql := func(db, sql string) (string, error) {
		uri := postgres.ConnURL{Host: "127.0.0.1", Port: pgPort, User: "app", Database: db, RootCert: caFile}
		c := exec.Command(harness.SystemBinary(t, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", uri.String(), "-c", sql)
		c.Env = append(os.Environ(), "PGPASSWORD="+appPassword, "PGCONNECT_TIMEOUT=5")
		out, err := c.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := psql("app", "SELECT extversion FROM pg_extension WHERE extname = 'vector'; SHOW work_mem"); err != nil || out != "0.8.0\n8MB" {
		t.Errorf("the application role sees: %v\n%s", err, out)
	}

	// A renewed certificate in the mounted Secret is served after the
	// manager's next look, with a reload: the restart count below stays 0.
	servedSerial := func() string {
		cfg, err := pgx.ParseConfig(postgres.ConnURL{Host: "127.0.0.1", Port: pgPort, User: "app", Password: appPassword, Database: "app", RootCert: caFile}.String())
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
	writeCert()
	waitFor(t, 30*time.Second, "the renewed certificate served", func() bool { return servedSerial() != before })

	_, metrics := get("/metrics")
	for _, want := range []string{"outpost_instance_up 1", "outpost_instance_ready 1", "outpost_instance_restarts_total 0", `outpost_instance_database_size_bytes{database="app"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// A postgres killed under it comes back; the metrics count it.
	pidFile := filepath.Join(dataDir, "postmaster.pid")
	b, _ := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	if !alive(pid) {
		t.Fatalf("no postgres runs (postmaster.pid %d)", pid)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	waitFor(t, 30*time.Second, "postgres back after SIGKILL", func() bool {
		_, m := get("/metrics")
		code, _ := get("/readyz")
		return code == 200 && strings.Contains(m, "outpost_instance_restarts_total 1")
	})

	// The controller changes the ConfigMap; the manager applies it.
	writeConfig("features")
	waitFor(t, 30*time.Second, "database features created", func() bool {
		out, err := psql("features", "SELECT extversion FROM pg_extension WHERE extname = 'vector'")
		return err == nil && out == "0.8.0"
	})

	// SIGTERM: postgres shuts down cleanly and the manager exits 0.
	b, _ = os.ReadFile(pidFile)
	pid, _ = strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("instance manager still running 60 s after SIGTERM; log:\n%s", logTail())
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM; log:\n%s", code, logTail())
	}
	if alive(pid) {
		t.Errorf("postgres pid %d survived the manager", pid)
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("postmaster.pid left behind: postgres did not shut down cleanly")
	}
	if strings.Contains(logTail(), appPassword) {
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
