package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Adopt attaches to a postgres already running on DataDir, typically one
// started by an Outpost process that has since crashed or been upgraded:
// the server runs in its own process group precisely so that it outlives
// Outpost, and a second postmaster could not start on the same data
// directory anyway.
//
// Adopt reads postmaster.pid and keeps the process only if it is alive, is a
// postgres binary whose working directory is DataDir (so a PID recycled
// after a reboot is not mistaken for it), listens on Port, and answers a
// query with Password; while it is still starting up (crash recovery), Adopt
// waits for it until ctx ends. It returns false and no error when nothing is
// running: no postmaster.pid, or a stale one. After Adopt, PID, Exited,
// Stop, Reload, Restart and ApplyParameters work on the adopted process.
func (s *Server) Adopt(ctx context.Context) (bool, error) {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	return s.adopt(ctx)
}

func (s *Server) adopt(ctx context.Context) (bool, error) {
	if s.current() != nil {
		return true, nil
	}
	pm, err := findPostmaster(s.DataDir)
	if err != nil {
		return false, fmt.Errorf("adopt postgres on %s: %w", s.DataDir, err)
	}
	if pm == nil {
		return false, nil
	}
	pid := pm.pid
	if pm.port != 0 && pm.port != s.Port {
		return false, fmt.Errorf("adopt postgres pid %d on %s: it listens on port %d, not %d; stop it or use its port", pid, s.DataDir, pm.port, s.Port)
	}

	p, err := adoptProcess(pid, pm.startTime)
	if err != nil {
		return false, fmt.Errorf("adopt postgres on %s: %w", s.DataDir, err)
	}
	if err := s.waitReady(ctx, p); err != nil {
		p.forget()
		if p.exited() {
			return false, nil // it went away while we waited: nothing runs now
		}
		return false, fmt.Errorf("adopt postgres pid %d on %s: %w", pid, s.DataDir, err)
	}
	s.setProc(p)
	return true, nil
}

// postmaster is the live server postmaster.pid names.
type postmaster struct {
	pid       int
	port      int // 0 while the file does not hold it yet
	startTime uint64
}

// findPostmaster returns the postmaster serving dataDir, or nil when none
// runs: no postmaster.pid, or a stale one whose PID is gone or now belongs
// to another process. A single-user backend holding the directory is an
// error, since it can neither be adopted nor let a server start.
func findPostmaster(dataDir string) (*postmaster, error) {
	path := filepath.Join(dataDir, "postmaster.pid")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid == 0 {
		return nil, fmt.Errorf("%s: first line %q is not a PID", path, lines[0])
	}
	if pid < 0 {
		if _, err := readProcStat(-pid); err == nil {
			return nil, fmt.Errorf("a single-user postgres (pid %d) holds %s; let it finish", -pid, dataDir)
		}
		return nil, nil
	}
	st, err := readProcStat(pid)
	if err != nil || st.state == 'Z' || st.state == 'X' {
		return nil, nil
	}
	if !servesDataDir(pid, dataDir) {
		return nil, nil
	}
	pm := &postmaster{pid: pid, startTime: st.startTime}
	// Line 4 is the port (LOCK_FILE_LINE_PORT in PostgreSQL's miscadmin.h).
	if len(lines) >= 4 {
		pm.port, _ = strconv.Atoi(strings.TrimSpace(lines[3]))
	}
	return pm, nil
}

// Running reports whether a live postmaster serves DataDir, whoever started
// it. It does not connect; Adopt does.
func (s *Server) Running() (bool, error) {
	pm, err := findPostmaster(s.DataDir)
	return pm != nil, err
}
