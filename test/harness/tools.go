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
// etcd, kube-apiserver, controller-gen and helm.
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
