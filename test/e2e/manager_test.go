package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/outpostdata/outpost/postgres"
	"github.com/outpostdata/outpost/test/harness"
)

// managerProcess is `outpost instance run`, the pod entrypoint, run as a
// local process the way the kubelet runs it, with its TLS Secret mounted in
// tlsDir as the controller fills it.
type managerProcess struct {
	dataDir, configFile, logPath string
	tlsDir, caFile, socketDir    string
	pgPort, httpPort             int
	ca                           *postgres.CA
	cmd                          *exec.Cmd
	done                         chan struct{}
}

// startManager has setup write the first configuration (p holds the ports
// and paths) and return the pod's environment variables, starts the
// instance manager with them added to this process's environment, and
// kills it and any postgres it left when the test ends.
func startManager(t *testing.T, setup func(p *managerProcess) (env []string)) *managerProcess {
	t.Helper()
	dir := harness.TempDir(t)
	p := &managerProcess{
		dataDir: filepath.Join(dir, "volume", "pgdata"), configFile: filepath.Join(dir, "instance.json"),
		logPath: filepath.Join(dir, "manager.log"), tlsDir: filepath.Join(dir, "tls"), socketDir: filepath.Join(dir, "run"),
		pgPort: harness.FreePort(t), httpPort: harness.FreePort(t), done: make(chan struct{}),
	}
	p.caFile = filepath.Join(p.tlsDir, "ca.crt")
	if err := os.MkdirAll(filepath.Dir(p.dataDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(p.tlsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	var err error
	if p.ca, err = postgres.NewCA("site", time.Now()); err != nil {
		t.Fatal(err)
	}
	p.writeCert(t)
	env := setup(p)
	p.cmd = exec.Command(outpostBin, "instance", "run", "--data-dir", p.dataDir, "--config", p.configFile,
		"--listen-address", "127.0.0.1", "--http-addr", fmt.Sprintf("127.0.0.1:%d", p.httpPort), "--reload-interval", "1s",
		"--tls-dir", p.tlsDir, "--socket-dir", p.socketDir)
	p.cmd.Env = append(os.Environ(), env...)
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		(&site{}).stopStrayServersIn(p.dataDir)
	})
	return p
}

// writeCert issues a new server certificate from the site CA and swaps it
// into the mounted directory, as kubelet updates a Secret volume.
func (p *managerProcess) writeCert(t *testing.T) {
	t.Helper()
	names := postgres.CertRequest{CommonName: "db", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}
	cert, key, err := p.ca.Issue(names, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"ca.crt": p.ca.CertPEM, "tls.crt": cert, "tls.key": key} {
		tmp := filepath.Join(p.tlsDir, name+".tmp")
		if err := os.WriteFile(tmp, data, 0o440); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(p.tlsDir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func (p *managerProcess) logTail() string { b, _ := os.ReadFile(p.logPath); return string(b) }

// get asks the manager's HTTP endpoint.
func (p *managerProcess) get(path string) (int, string) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", p.httpPort, path))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
