package postgres

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is one postmaster, either started by this Server (a child of ours)
// or adopted from an earlier Outpost process (not our child, so its exit is
// noticed by polling /proc instead of wait(2)).
type process struct {
	pid  int
	proc *os.Process // signals go through a pidfd on Linux, so never to a recycled PID
	done chan struct{}
	// release ends the watch of an adopted process that was not kept.
	release     chan struct{}
	releaseOnce sync.Once

	mu       sync.Mutex
	exitErr  error // why it exited; set before done is closed
	stopping bool  // Stop asked it to exit
}

// startChild starts cmd and returns its process, watched by wait(2).
func startChild(cmd *exec.Cmd) (*process, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{pid: cmd.Process.Pid, proc: cmd.Process, done: make(chan struct{})}
	go func() { p.finish(cmd.Wait()) }()
	return p, nil
}

// adoptProcess watches a postmaster we did not start. startTime is its start
// time in clock ticks from /proc/PID/stat, so that a recycled PID is not
// mistaken for it.
func adoptProcess(pid int, startTime uint64) (*process, error) {
	proc, err := os.FindProcess(pid)
	if err != nil {
		return nil, fmt.Errorf("find postgres pid %d: %w", pid, err)
	}
	p := &process{pid: pid, proc: proc, done: make(chan struct{}), release: make(chan struct{})}
	go func() {
		for {
			st, err := readProcStat(pid)
			if err != nil || st.startTime != startTime || st.state == 'Z' || st.state == 'X' {
				p.finish(errors.New("exited (its exit status is known only to its parent)"))
				return
			}
			select {
			case <-p.release:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return p, nil
}

// forget stops watching an adopted process that Adopt decided not to keep;
// the process itself is left alone.
func (p *process) forget() {
	if p.release != nil {
		p.releaseOnce.Do(func() { close(p.release) })
	}
}

// finish records the exit.
func (p *process) finish(err error) {
	p.mu.Lock()
	p.exitErr = err
	p.mu.Unlock()
	close(p.done)
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitError says why the process exited; nil while it runs.
func (p *process) exitError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exitErr == nil && p.exited() {
		return errors.New("exit status 0")
	}
	return p.exitErr
}

func (p *process) markStopping() {
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
}

// stopRequested reports whether Stop (or Restart) made the process exit, as
// opposed to a crash.
func (p *process) stopRequested() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopping
}

// signal sends sig; a process that has already exited is not an error.
func (p *process) signal(sig syscall.Signal) error {
	if p.exited() {
		return nil
	}
	if err := p.proc.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal postgres pid %d: %w", p.pid, err)
	}
	return nil
}

// procStat is what Outpost needs from /proc/PID/stat.
type procStat struct {
	state     byte
	startTime uint64 // clock ticks after boot
}

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command name (field 2) is in parentheses and may hold spaces or
	// parentheses itself, so the fields are counted after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	// fields[0] is field 3 of proc(5), state; starttime is field 22.
	start, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: starttime: %w", pid, err)
	}
	return procStat{state: fields[0][0], startTime: start}, nil
}

// servesDataDir reports whether the process is a postgres server process
// whose working directory is dataDir: the postmaster changes into its data
// directory, so this tells a live server of ours from a PID that was
// recycled after a reboot. A process that cannot be inspected (gone, or
// another user's) is not ours.
func servesDataDir(pid int, dataDir string) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || filepath.Base(strings.TrimSuffix(exe, " (deleted)")) != "postgres" {
		return false
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return false
	}
	want, err := filepath.Abs(dataDir)
	if err != nil {
		return false
	}
	if resolved, err := filepath.EvalSymlinks(want); err == nil {
		want = resolved
	}
	return cwd == want
}

// procID identifies a process across PID reuse.
type procID struct {
	pid       int
	startTime uint64
}

// leftovers returns the processes still serving dataDir: postgres
// processes whose working directory it is. Every process of a server has
// it (the postmaster changes into the data directory and its children
// inherit that), so when no postmaster runs there, these are the backends
// and workers of one that died without shutting down (SIGKILL, the OOM
// killer). They hold its shared memory, and a new postmaster refuses to
// start while they do.
func leftovers(dataDir string) []procID {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var found []procID
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if !servesDataDir(pid, dataDir) {
			continue
		}
		st, err := readProcStat(pid)
		if err != nil || st.state == 'Z' || st.state == 'X' {
			continue
		}
		found = append(found, procID{pid, st.startTime})
	}
	return found
}

// alive reports whether the process still runs (a zombie does not).
func (id procID) alive() bool {
	st, err := readProcStat(id.pid)
	return err == nil && st.startTime == id.startTime && st.state != 'Z' && st.state != 'X'
}

// signal sends sig to the process, through a pidfd opened before checking
// that the PID is still the same process, so a recycled PID is never hit.
func (id procID) signal(sig syscall.Signal) {
	proc, err := os.FindProcess(id.pid)
	if err != nil {
		return
	}
	defer proc.Release()
	if id.alive() {
		_ = proc.Signal(sig)
	}
}

// quitLeftovers ends what a dead postmaster left in dataDir: SIGQUIT, as
// the postmaster itself tells its children in an immediate shutdown, then
// SIGKILL for those still there after 5 seconds. Call it only when no
// postmaster runs on dataDir, or it would take a live server's backends.
func quitLeftovers(dataDir string) error {
	left := leftovers(dataDir)
	for _, sig := range []syscall.Signal{syscall.SIGQUIT, syscall.SIGKILL} {
		if len(left) == 0 {
			return nil
		}
		for _, id := range left {
			id.signal(sig)
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(left) > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			left = slices.DeleteFunc(left, func(id procID) bool { return !id.alive() })
		}
	}
	if len(left) > 0 {
		pids := make([]string, len(left))
		for i, id := range left {
			pids[i] = strconv.Itoa(id.pid)
		}
		return fmt.Errorf("processes left in %s by a postmaster that died (pids %s) did not exit after SIGKILL", dataDir, strings.Join(pids, ", "))
	}
	return nil
}
