package cluster

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/outpostdata/outpost/test/harness"
)

// Stopped is how long the last Stop took, for the run's report.
var Stopped time.Duration

// Stop undoes Start, whatever part of it ran: it stops the processes Start
// started (by PID), kills what is left in the pods' cgroups and the shims
// of this containerd (by PID, found by this run's socket in their command
// line), unmounts what the node mounted under its directories, and removes
// the cgroups, the network namespace and the files.
func (cl *Cluster) Stop() error {
	begin := time.Now()
	defer func() { Stopped = time.Since(begin) }()
	var errs []error
	// kubelet first, so that it does not start what is killed next.
	stopAll(cl.kubelet, cl.kubeProxy, cl.coredns, cl.scheduler, cl.controllerManager)
	if cl.cgroups != nil {
		errs = append(errs, killAndWait("pod processes", cl.cgroups.pids()))
	}
	if c := cl.containerd; c != nil && c.proc != nil {
		if !c.proc.Exited() {
			if err := c.removeContainers(); err != nil {
				errs = append(errs, err)
			}
		}
		errs = append(errs, killAndWait("containerd shims", shims(c.Socket)))
		c.proc.Stop()
	}
	if cl.cp != nil {
		if err := cl.cp.env.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop kube-apiserver and etcd: %w", err))
		}
	}
	if cl.Dir != "" {
		roots := []string{cl.Dir}
		if cl.containerd != nil {
			roots = append(roots, cl.containerd.Root)
		}
		errs = append(errs, unmountUnder(roots...))
	}
	if cl.cgroups != nil {
		errs = append(errs, cl.cgroups.remove())
	}
	if cl.net != nil {
		errs = append(errs, cl.net.remove())
	}
	if cl.Dir != "" {
		errs = append(errs, os.RemoveAll(cl.Dir))
	}
	// containerd's shims put their sockets under /run/containerd whatever
	// the configuration says; remove the directories if they are empty.
	for _, d := range []string{"/run/containerd/s", "/run/containerd"} {
		os.Remove(d)
	}
	if cl.hostFwd != "" {
		if fwd, _ := hostIPForward(); fwd != cl.hostFwd {
			errs = append(errs, fmt.Errorf("the host's net.ipv4.ip_forward is %s, not %s as before the cluster started", fwd, cl.hostFwd))
		}
	}
	return errors.Join(errs...)
}

func stopAll(ps ...*harness.Process) {
	var wg sync.WaitGroup
	for _, p := range ps {
		if p == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); p.Stop() }()
	}
	wg.Wait()
}

// shims lists the PIDs of containerd-shim-runc-v2 processes serving the
// containerd at socket: their command line names it (-address).
func shims(socket string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 0 && strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") && slices.Contains(args, socket) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killAndWait sends SIGKILL to pids and waits until each is gone. A
// zombie counts as gone: it holds nothing, and its parent (not us) reaps
// it.
func killAndWait(what string, pids []int) error {
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		var left []int
		for _, pid := range pids {
			if alive(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still running 15 s after SIGKILL: PIDs %v", what, left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

// unmountUnder detaches every mount point under the roots (overlay
// rootfs, pod network namespaces, kubelet's secret volumes), deepest first.
func unmountUnder(roots ...string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescapeMount(fields[4])
		for _, r := range roots {
			if p == r || strings.HasPrefix(p, r+"/") {
				points = append(points, p)
				break
			}
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
