package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Containerd is Debian's containerd, started for one test with its own
// root, state and socket under a temp dir. It listens on its unix socket
// only (no TCP debug or metrics address) and runs no CRI plugin: tests use
// it to import and inspect images, not to run pods.
type Containerd struct {
	// Socket is the gRPC socket, for `ctr -a` and `outpost bundle import
	// --containerd-address`.
	Socket string
	proc   *Process
}

// StartContainerd starts containerd and waits until it answers. It is
// stopped by PID when the test ends.
func StartContainerd(tb testing.TB) *Containerd {
	tb.Helper()
	bin := SystemBinary(tb, "containerd")
	SystemBinary(tb, "ctr")
	dir := TempDir(tb)
	c := &Containerd{Socket: filepath.Join(dir, "containerd.sock")}
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
[metrics]
  address = ""
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.Socket, c.Socket+".ttrpc")
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		tb.Fatal(err)
	}
	c.proc = startProcess(tb, "containerd", dir, exec.Command(bin, "--config", cfgPath))
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.run("version"); err == nil {
			return c
		}
		if c.proc.Exited() || time.Now().After(deadline) {
			tb.Fatalf("containerd did not answer on %s:\n%s", c.Socket, c.proc.LogTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// run runs `ctr -a SOCKET -n k8s.io ARGS...`, the namespace kubelet uses.
func (c *Containerd) run(args ...string) (string, error) {
	out, err := exec.Command("ctr", append([]string{"-a", c.Socket, "-n", "k8s.io"}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Ctr runs ctr against this containerd in the k8s.io namespace and returns
// its output, failing the test if it fails.
func (c *Containerd) Ctr(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := c.run(args...)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// Refs lists the image references in the k8s.io namespace.
func (c *Containerd) Refs(tb testing.TB) []string {
	tb.Helper()
	return strings.Fields(c.Ctr(tb, "images", "ls", "-q"))
}

// Blobs maps each content blob's digest to its size in bytes.
func (c *Containerd) Blobs(tb testing.TB) map[string]int64 {
	tb.Helper()
	out := map[string]int64{}
	lines := strings.Split(strings.TrimSpace(c.Ctr(tb, "content", "ls")), "\n")
	for _, line := range lines[1:] { // the first line is the header
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		out[f[0]] = parseSize(tb, f[1])
	}
	return out
}

// parseSize reads ctr's human sizes ("554B", "445.7MB").
func parseSize(tb testing.TB, s string) int64 {
	tb.Helper()
	units := []struct {
		suffix string
		mult   float64
	}{{"GB", 1e9}, {"MB", 1e6}, {"kB", 1e3}, {"B", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			var v float64
			if _, err := fmt.Sscanf(num, "%g", &v); err != nil {
				tb.Fatalf("ctr content ls: size %q: %v", s, err)
			}
			return int64(v * u.mult)
		}
	}
	tb.Fatalf("ctr content ls: size %q has no unit", s)
	return 0
}
