package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BuildOutpost builds the outpost binary into a new directory that the
// postgres user can enter (PostgreSQL runs it as archive_command), for a
// TestMain. remove deletes the directory.
func BuildOutpost() (path string, remove func(), err error) {
	dir, err := os.MkdirTemp("", "outpost-bin-")
	if err != nil {
		return "", nil, err
	}
	remove = func() { os.RemoveAll(dir) }
	if err := os.Chmod(dir, 0o755); err != nil {
		remove()
		return "", nil, err
	}
	path = filepath.Join(dir, "outpost")
	build := exec.Command("go", "build", "-o", path, "./cmd/outpost")
	build.Dir = RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		remove()
		return "", nil, fmt.Errorf("build outpost: %w\n%s", err, out)
	}
	return path, remove, nil
}

// RunWithOutpost is a TestMain body for packages whose tests run the
// outpost binary: it builds it into *bin, runs the tests, removes it and
// exits with the tests' code.
func RunWithOutpost(m *testing.M, bin *string) {
	path, remove, err := BuildOutpost()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*bin = path
	code := m.Run()
	remove()
	os.Exit(code)
}
