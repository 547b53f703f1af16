package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Restart timing. The first attempt waits a little so the dead postmaster's
// backends, told to quit, can release its shared memory; a server that keeps
// dying is retried less and less often, and one that stayed up a while
// starts again quickly the next time.
const (
	backoffStart   = 250 * time.Millisecond
	backoffCap     = 10 * time.Second
	backoffReset   = time.Minute
	healthInterval = 5 * time.Second
	healthTimeout  = 5 * time.Second
)

// Supervisor keeps one Server running. Run adopts a running postgres or
// starts one, checks its health over a real connection, and restarts it
// with exponential backoff (from 250ms up to 10s, back to 250ms once it has
// stayed up a minute) whenever it dies unexpectedly, counting restarts.
// When ctx ends, Run stops the server (fast shutdown) and returns.
//
// While Run runs, the server's life belongs to it: change settings with
// Server.ApplyParameters or Server.Restart, which the supervisor recognises
// as intended, and stop the server by cancelling Run's context. A direct
// Server.Stop is undone (the server is started again, not counted as a
// crash).
type Supervisor struct {
	Server *Server
	// Logger receives what happens to the server; nil means slog.Default().
	Logger *slog.Logger
	// OnChange, if set, is called after each start, adoption, crash,
	// restart and stop, and when Ready changes, so that a controller can
	// requeue the instance. It is called from Run's goroutine and must not
	// block.
	OnChange func()

	mu       sync.Mutex
	restarts int
	ready    bool
	lastErr  error
}

// Run supervises the server until ctx ends, then stops it and returns the
// error of that stop, if any. It returns at once with an error when the
// data directory holds no cluster: Run does not initialise one.
func (s *Supervisor) Run(ctx context.Context) error {
	srv := s.Server
	if srv == nil {
		return errors.New("supervise postgres: Supervisor.Server is nil")
	}
	if !srv.Initialized() {
		return fmt.Errorf("supervise postgres %s: the data directory holds no cluster; run InitDB first", srv.DataDir)
	}
	log := s.logger().With("dataDir", srv.DataDir, "port", srv.Port)

	var (
		delay   time.Duration // before the next attempt to have a server running
		crashed bool          // it died unexpectedly and is not back yet
	)
	for {
		if delay > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(delay):
			}
		}
		if ctx.Err() != nil {
			return s.shutdown(log)
		}
		how, err := srv.ensureRunning(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return s.shutdown(log)
			}
			delay = nextDelay(delay)
			s.setError(err)
			log.Error("postgres is not running; trying again", "in", delay, "err", err)
			continue
		}
		p := srv.current()
		if p == nil { // it died right after starting
			crashed, delay = true, nextDelay(delay)
			continue
		}
		if crashed {
			crashed = false
			log.Info("postgres is back after a crash", "pid", p.pid, "how", how, "restarts", s.countRestart())
		} else {
			log.Info("postgres is running", "pid", p.pid, "how", how)
		}
		s.check(ctx, log)
		s.notify()
		upSince := time.Now()

		s.watch(ctx, log, p)
		if ctx.Err() != nil {
			return s.shutdown(log)
		}
		s.setReady(false)
		if p.stopRequested() {
			// Restart or Stop ended it on purpose: see what runs now.
			delay = 0
			continue
		}
		crashed = true
		err = fmt.Errorf("postgres pid %d exited unexpectedly: %v", p.pid, p.exitError())
		s.setError(err)
		if time.Since(upSince) >= backoffReset {
			delay = backoffStart
		} else {
			delay = nextDelay(delay)
		}
		log.Warn("postgres exited unexpectedly; restarting", "pid", p.pid, "err", p.exitError(), "in", delay)
		s.notify()
	}
}

// watch returns when the process exits or ctx ends, checking health
// meanwhile.
func (s *Supervisor) watch(ctx context.Context, log *slog.Logger, p *process) {
	ticker := time.NewTicker(healthInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.done:
			return
		case <-ticker.C:
			s.check(ctx, log)
		}
	}
}

// check pings the server and records the outcome, telling OnChange when
// readiness changes. A server that stops answering is reported, not
// restarted: it may be busy with crash recovery or a long checkpoint, and
// killing it would only make that start over.
func (s *Supervisor) check(ctx context.Context, log *slog.Logger) {
	pingCtx, cancel := context.WithTimeout(ctx, healthTimeout)
	err := s.Server.Ping(pingCtx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		err = fmt.Errorf("health check of postgres %s: %w", s.Server.DataDir, err)
		s.setError(err)
	}
	if s.setReady(err == nil) {
		if err != nil {
			log.Warn("postgres is not answering", "err", err)
		} else {
			log.Info("postgres is ready")
		}
		s.notify()
	}
}

// shutdown stops the server when Run's context has ended.
func (s *Supervisor) shutdown(log *slog.Logger) error {
	s.setReady(false)
	err := s.Server.Stop(context.Background())
	if err != nil {
		err = fmt.Errorf("supervise postgres %s: stop: %w", s.Server.DataDir, err)
		s.setError(err)
		log.Error("postgres did not stop", "err", err)
	} else {
		log.Info("postgres stopped")
	}
	s.notify()
	return err
}

func nextDelay(d time.Duration) time.Duration {
	if d <= 0 {
		return backoffStart
	}
	return min(2*d, backoffCap)
}

// Restarts returns how many times the server was brought back after dying
// unexpectedly.
func (s *Supervisor) Restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts
}

// Ready reports whether the server is up and answered its last health check.
func (s *Supervisor) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

// LastError returns the most recent failure: a crash, a failed start or
// adoption, a failed health check or stop. It stays after the server
// recovers, to say what happened; Ready says whether it is up now.
func (s *Supervisor) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

func (s *Supervisor) countRestart() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.restarts++
	return s.restarts
}

// setReady records readiness and reports whether it changed.
func (s *Supervisor) setReady(ready bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := s.ready != ready
	s.ready = ready
	return changed
}

func (s *Supervisor) setError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = err
}

func (s *Supervisor) notify() {
	if s.OnChange != nil {
		s.OnChange()
	}
}

func (s *Supervisor) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// ensureRunning is the Supervisor's way to a running server, under the
// lifecycle lock so that it cannot race Restart: keep the process that
// runs, else adopt one found on DataDir, else start one. It says which.
func (s *Server) ensureRunning(ctx context.Context) (string, error) {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	if s.current() != nil {
		return "running", nil
	}
	adopted, err := s.adopt(ctx)
	if err != nil {
		return "", err
	}
	if adopted {
		return "adopted", nil
	}
	if err := s.start(ctx); err != nil {
		return "", err
	}
	return "started", nil
}
