package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// cgroupV1 is where this machine mounts its cgroup v1 hierarchies (cgroup2
// is at unified/, which kubelet does not use here).
const cgroupV1 = "/sys/fs/cgroup"

// cgroups is kubelet's cgroupRoot: a directory of this run's in every
// cgroup v1 hierarchy, under which kubelet puts kubepods and every pod.
// Teardown kills what is left in it, by PID, and removes it.
type cgroups struct {
	root        string // e.g. /outpost-cluster-0
	hierarchies []string
}

func createCgroups(name string) (*cgroups, error) {
	entries, err := os.ReadDir(cgroupV1)
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	cg := &cgroups{root: "/" + name}
	for _, e := range entries {
		if !e.IsDir() || e.Name() == "unified" {
			continue
		}
		h := filepath.Join(cgroupV1, e.Name())
		if _, err := os.Stat(filepath.Join(h, "cgroup.procs")); err != nil {
			continue
		}
		dir := filepath.Join(h, name)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return cg, fmt.Errorf("cgroup %s: %w", dir, err)
		}
		cg.hierarchies = append(cg.hierarchies, h)
		// A new cpuset has no CPUs and no memory nodes, and no process
		// can join it or its children until it has the parent's.
		if e.Name() == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := os.ReadFile(filepath.Join(h, f))
				if err != nil {
					return cg, fmt.Errorf("cgroup %s: %w", h, err)
				}
				if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
					return cg, fmt.Errorf("cgroup %s: %w", dir, err)
				}
			}
		}
	}
	return cg, nil
}

// pids lists every process in the tree (from the pids hierarchy, or any).
func (cg *cgroups) pids() []int {
	var pids []int
	for _, h := range cg.hierarchies {
		filepath.WalkDir(filepath.Join(h, cg.root), func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			b, _ := os.ReadFile(filepath.Join(path, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && !slices.Contains(pids, pid) {
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	return pids
}

// remove deletes the tree, deepest first; it fails while a process is
// still in it.
func (cg *cgroups) remove() error {
	var errs []error
	for _, h := range cg.hierarchies {
		var dirs []string
		filepath.WalkDir(filepath.Join(h, cg.root), func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove cgroup: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}
