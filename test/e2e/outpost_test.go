package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outpostdata/outpost/test/harness"
)

// outpostBin is the binary under test, built once by TestMain.
var outpostBin string

func TestMain(m *testing.M) { harness.RunWithOutpost(m, &outpostBin) }

// site is one state directory and the `outpost up` serving it.
type site struct {
	t        *testing.T
	stateDir string
	port     int
	up       *upProcess
}

func newSite(t *testing.T) *site {
	s := &site{t: t, stateDir: filepath.Join(harness.TempDir(t), "state"), port: harness.FreePort(t)}
	// Whatever a test kills, no postgres it caused to run outlives it.
	t.Cleanup(s.stopStrayServers)
	return s
}

// upProcess is a running `outpost up`.
type upProcess struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

// start runs `outpost up` and waits until it has announced that every
// instance is Ready.
func (s *site) start() {
	s.t.Helper()
	cmd := exec.Command(outpostBin, "up", "--state-dir", s.stateDir, "--first-port", strconv.Itoa(s.port))
	up := &upProcess{cmd: cmd, done: make(chan struct{})}
	logf, err := os.OpenFile(filepath.Join(filepath.Dir(s.stateDir), "outpost-up.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start outpost up: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			up.mu.Lock()
			up.out.WriteString(sc.Text() + "\n")
			up.mu.Unlock()
		}
		cmd.Wait()
		logf.Close()
		close(up.done)
	}()
	s.up = up
	s.t.Cleanup(func() { s.stop() })
	s.waitOutput("Press Ctrl-C to stop.", 3*time.Minute)
}

func (s *site) output() string {
	s.up.mu.Lock()
	defer s.up.mu.Unlock()
	return s.up.out.String()
}

// waitOutput waits until `outpost up` has printed want.
func (s *site) waitOutput(want string, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(s.output(), want) {
		select {
		case <-s.up.done:
			s.t.Fatalf("outpost up exited before printing %q; stdout:\n%s\nlog:\n%s", want, s.output(), s.log())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("outpost up did not print %q within %s; stdout:\n%s\nlog:\n%s", want, timeout, s.output(), s.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *site) log() string {
	b, _ := os.ReadFile(filepath.Join(filepath.Dir(s.stateDir), "outpost-up.log"))
	return string(b)
}

// stop interrupts `outpost up` as Ctrl-C would and waits for it to exit.
func (s *site) stop() {
	s.t.Helper()
	if s.up == nil {
		return
	}
	up := s.up
	s.up = nil
	select {
	case <-up.done:
		return
	default:
	}
	up.cmd.Process.Signal(os.Interrupt)
	select {
	case <-up.done:
		if code := up.cmd.ProcessState.ExitCode(); code != 0 {
			s.t.Errorf("outpost up exited with %d after Ctrl-C; log:\n%s", code, s.log())
		}
	case <-time.After(90 * time.Second):
		up.cmd.Process.Kill()
		<-up.done
		s.t.Errorf("outpost up did not stop within 90 s of Ctrl-C; log:\n%s", s.log())
	}
}

// crash kills `outpost up` with SIGKILL, leaving its servers running.
func (s *site) crash() {
	s.t.Helper()
	s.up.cmd.Process.Kill()
	<-s.up.done
	s.up = nil
}

// outpost runs a CLI command against the site and returns its output,
// failing the test if it fails.
func (s *site) outpost(args ...string) string {
	s.t.Helper()
	out, err := s.tryOutpost(args...)
	if err != nil {
		s.t.Fatalf("outpost %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (s *site) tryOutpost(args ...string) (string, error) {
	cmd := exec.Command(outpostBin, append(args, "--state-dir", s.stateDir)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// instance is what `outpost get -o json` says of one instance.
type instance struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Parameters map[string]string `json:"parameters"`
	} `json:"spec"`
	Status struct {
		Phase      string `json:"phase"`
		Endpoint   string `json:"endpoint"`
		Restarts   int    `json:"restarts"`
		Conditions []struct {
			Type, Status, Reason, Message string
		} `json:"conditions"`
	} `json:"status"`
}

func (s *site) instances() map[string]instance {
	s.t.Helper()
	var list struct {
		Items []instance `json:"items"`
	}
	out := s.outpost("get", "instances", "-o", "json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		s.t.Fatalf("outpost get -o json printed something that is not JSON: %v\n%s", err, out)
	}
	m := map[string]instance{}
	for _, i := range list.Items {
		m[i.Metadata.Name] = i
	}
	return m
}

// waitPhase polls `outpost get` until the instance has the phase, and
// returns it.
func (s *site) waitPhase(name, phase string, timeout time.Duration) instance {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		inst, ok := s.instances()[name]
		if ok && inst.Status.Phase == phase {
			return inst
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("instance %s is %+v, not %s, after %s; log:\n%s", name, inst.Status, phase, timeout, s.log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// writeManifest drops a manifest into the manifests directory, as a user
// with an editor would.
func (s *site) writeManifest(name, content string) {
	s.t.Helper()
	if err := os.WriteFile(filepath.Join(s.stateDir, "manifests", name), []byte(content), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// psqlCommand is the command `outpost up` printed for an instance.
func (s *site) psqlCommand(name string) string {
	s.t.Helper()
	re := regexp.MustCompile(`(?m)default/` + regexp.QuoteMeta(name) + ` is Ready at \S+\n\s+(PGPASSFILE=.*)$`)
	m := re.FindStringSubmatch(s.output())
	if m == nil {
		s.t.Fatalf("outpost up printed no psql command for %s:\n%s", name, s.output())
	}
	return m[1]
}

// psql runs SQL through psql as the application role of an instance, with
// the connection details from its credentials file, and returns the rows
// unaligned.
func (s *site) psql(name, sql string) string {
	s.t.Helper()
	out, err := s.tryPsql(name, sql)
	if err != nil {
		s.t.Fatalf("psql on %s: %v\n%s", name, err, out)
	}
	return out
}

func (s *site) tryPsql(name, sql string) (string, error) {
	dir := filepath.Join(s.stateDir, "instances", "default", name)
	var creds struct {
		Host     string `json:"host"`
		Port     int    `json:"port"`
		Database string `json:"database"`
		Username string `json:"username"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "credentials.json"))
	if err != nil {
		return "", err
	}
	if err := json.Unmarshal(b, &creds); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.SystemBinary(s.t, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-h", creds.Host, "-p", strconv.Itoa(creds.Port), "-U", creds.Username, "-d", creds.Database, "-c", sql)
	cmd.Env = append(os.Environ(), "PGPASSFILE="+filepath.Join(dir, "pgpass"), "PGCONNECT_TIMEOUT=5")
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// postmasterPID reads an instance's postmaster.pid; 0 when it has none.
func (s *site) postmasterPID(dataDir string) int {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	return pid
}

func (s *site) instanceDataDir(name string) string {
	return filepath.Join(s.stateDir, "instances", "default", name, "data")
}

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// stopStrayServers stops, by the PIDs in their postmaster.pid files, any
// server of this site still running after a test that crashed outpost.
func (s *site) stopStrayServers() {
	dirs, _ := filepath.Glob(filepath.Join(s.stateDir, "instances", "*", "*", "data"))
	dirs = append(dirs, filepath.Join(s.stateDir, "controldb", "data"))
	for _, d := range dirs {
		if pid := s.postmasterPID(d); alive(pid) {
			syscall.Kill(pid, syscall.SIGQUIT)
			for i := 0; i < 50 && alive(pid); i++ {
				time.Sleep(100 * time.Millisecond)
			}
			if alive(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}
