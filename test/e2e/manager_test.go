package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/outpostdata/outpost/test/harness"
)

// managerProcess is `outpost instance run`, the pod entrypoint, run as a
// local process the way the kubelet runs it.
type managerProcess struct {
	dataDir, configFile, logPath string
	pgPort, httpPort             int
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
		logPath: filepath.Join(dir, "manager.log"), pgPort: harness.FreePort(t), httpPort: harness.FreePort(t),
		done: make(chan struct{}),
	}
	if err := os.MkdirAll(filepath.Dir(p.dataDir), 0o755); err != nil {
		t.Fatal(err)
	}
	env := setup(p)
	p.cmd = exec.Command(outpostBin, "instance", "run", "--data-dir", p.dataDir, "--config", p.configFile,
		"--listen-address", "127.0.0.1", "--http-addr", fmt.Sprintf("127.0.0.1:%d", p.httpPort), "--reload-interval", "1s")
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
