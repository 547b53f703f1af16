package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// ToolsBin is where scripts/install-deps.sh puts the tools it builds: MinIO,
// etcd, the Kubernetes components (kube-apiserver, kubelet, ... as symlinks to
// one multi-call binary), CoreDNS, controller-gen and helm.
func ToolsBin() string {
	if dir := os.Getenv("OUTPOST_TOOLS_DIR"); dir != "" {
		return filepath.Join(dir, "bin")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".cache", "outpost", "tools", "bin")
}

// Tool returns the path of a tool installed by `make deps`, failing the test
// when it is missing.
func Tool(tb testing.TB, name string) string {
	tb.Helper()
	path, err := ToolPath(name)
	if err != nil {
		tb.Fatal(err)
	}
	return path
}

// ToolPath is Tool for code without a test at hand (a TestMain).
func ToolPath(name string) (string, error) {
	path := filepath.Join(ToolsBin(), name)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("%s not found at %s: run `make deps` (scripts/install-deps.sh) to build it", name, path)
	}
	return path, nil
}

// ImageBaseLayer returns the images' base layer that scripts/install-deps.sh
// builds (step image-base), failing the test when it is missing. It is
// where image.DefaultBaseLayer looks.
func ImageBaseLayer(tb testing.TB) string {
	tb.Helper()
	p := filepath.Join(filepath.Dir(ToolsBin()), "images", "base.tar")
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("images' base layer %s not found: run `make deps` (scripts/install-deps.sh, step image-base): %v", p, err)
	}
	return p
}

// SystemBinary returns the path of a binary on PATH, failing the test when
// it is missing.
func SystemBinary(tb testing.TB, name string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		tb.Fatalf("%s not found on PATH: run `make deps` to install it", name)
	}
	return path
}

// RepoRoot is the root of the Outpost source tree.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
