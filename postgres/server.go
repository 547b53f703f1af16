package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Superuser is the name of the bootstrap superuser initdb creates.
const Superuser = "postgres"

// SQLSTATE codes this package branches on (pgerrcode is not a dependency).
const (
	codeInvalidCatalogName = "3D000" // no such database
	codeDuplicateObject    = "42710"
	codeDuplicateDB        = "42P04"
	codeUniqueViolation    = "23505"
)

// managedConfFile is the file, included from postgresql.conf, that holds the
// settings Outpost manages; initdb's postgresql.conf is left as it was.
const managedConfFile = "outpost.conf"

// Server is one PostgreSQL server: a data directory and the process serving
// it. The zero value is not usable; set at least DataDir, Port and Password.
type Server struct {
	// BinDir holds initdb and postgres; empty means BinDir(DefaultMajorVersion).
	BinDir string
	// DataDir is the data directory (PGDATA).
	DataDir string
	// ListenAddress is where the server listens; empty means 127.0.0.1.
	ListenAddress string
	// Port is the TCP port.
	Port int
	// Password of the superuser, set by InitDB and needed to connect.
	Password string
	// LogFile receives the server's stderr; empty means DataDir + ".log".
	LogFile string
	// TLS, when set, makes every TCP connection use TLS (hostssl), and lets
	// the superuser in over TCP only with a client certificate the CA
	// signed; SocketDir must then be set too.
	TLS *TLSFiles
	// SocketDir, when set, is a directory for a Unix socket that only the
	// server's account (and root) may enter: the superuser connects there
	// with its password, which is how Outpost itself manages the server.
	SocketDir string

	// ManagedSettings are settings Outpost itself owns besides the address
	// and port, for example WAL archiving (archive_mode, archive_command), or
	// unix_socket_directories inside a pod. WriteConfig writes them after the
	// caller's parameters, so they win; ApplyParameters, which refuses
	// ManagedParameters from users, passes them through.
	ManagedSettings map[string]string

	// lifecycle is held by Start, Stop, Restart, Adopt, Reload and
	// ApplyParameters, so that, for example, a Supervisor noticing the exit
	// Restart caused waits for Restart's own start instead of racing it.
	lifecycle sync.Mutex
	mu        sync.Mutex // guards proc
	proc      *process   // the started or adopted postmaster; nil when none
}

func (s *Server) binDir() (string, error) {
	if s.BinDir != "" {
		return s.BinDir, nil
	}
	return BinDir(DefaultMajorVersion)
}

func (s *Server) listenAddress() string {
	if s.ListenAddress != "" {
		return s.ListenAddress
	}
	return "127.0.0.1"
}

func (s *Server) logFile() string {
	if s.LogFile != "" {
		return s.LogFile
	}
	return s.DataDir + ".log"
}

// Initialized reports whether DataDir already holds a cluster.
func (s *Server) Initialized() bool {
	_, err := os.Stat(filepath.Join(s.DataDir, "PG_VERSION"))
	return err == nil
}

// InitDB creates the cluster in DataDir with SCRAM-SHA-256 authentication for
// every connection, data checksums, and the superuser's password. DataDir is
// created with mode 0700 and must not hold a cluster yet.
func (s *Server) InitDB(ctx context.Context) error {
	if s.Password == "" {
		return errors.New("initdb: the superuser password is empty")
	}
	if s.Initialized() {
		return fmt.Errorf("initdb: %s already holds a cluster", s.DataDir)
	}
	bin, err := s.binDir()
	if err != nil {
		return err
	}
	acct, err := serverAccount()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.DataDir, 0o700); err != nil {
		return fmt.Errorf("initdb: create data directory: %w", err)
	}
	if err := acct.checkReachable(s.DataDir); err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	if err := acct.own(s.DataDir); err != nil {
		return fmt.Errorf("initdb: give %s to the server user: %w", s.DataDir, err)
	}

	// The password reaches initdb through a 0600 file beside the data
	// directory, never on a command line where ps would show it.
	pwfile, err := os.CreateTemp(filepath.Dir(s.DataDir), ".pwfile-*")
	if err != nil {
		return fmt.Errorf("initdb: password file: %w", err)
	}
	defer os.Remove(pwfile.Name())
	if _, err := pwfile.WriteString(s.Password + "\n"); err != nil {
		pwfile.Close()
		return fmt.Errorf("initdb: password file: %w", err)
	}
	if err := pwfile.Close(); err != nil {
		return fmt.Errorf("initdb: password file: %w", err)
	}
	if err := acct.own(pwfile.Name()); err != nil {
		return fmt.Errorf("initdb: password file: %w", err)
	}

	cmd := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"--pgdata", s.DataDir,
		"--username", Superuser,
		"--pwfile", pwfile.Name(),
		"--auth", "scram-sha-256",
		"--encoding", "UTF8",
		"--locale", "C.UTF-8",
		"--data-checksums",
	)
	cmd.SysProcAttr = acct.sysProcAttr()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("initdb %s: %w\n%s", s.DataDir, err, strings.TrimSpace(out.String()))
	}

	conf := filepath.Join(s.DataDir, "postgresql.conf")
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	_, err = fmt.Fprintf(f, "\n# Settings managed by Outpost.\ninclude_if_exists '%s'\n", managedConfFile)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("initdb: %s: %w", conf, err)
	}
	return nil
}

// Start starts postgres in its own process group, so that a Ctrl-C in the
// terminal reaches Outpost but not the server (Outpost decides when the
// server stops), and waits until it accepts connections. If the server
// exits, refuses the password, or ctx ends first, the error carries the end
// of its log and no server is left running.
func (s *Server) Start(ctx context.Context) error {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	return s.start(ctx)
}

// spawn starts the postmaster as the server's account, in its own process
// group (a Ctrl-C at the terminal is the controller's to handle), with its
// output appended to the log file, and makes it the current process.
func (s *Server) spawn() (*process, error) {
	bin, err := s.binDir()
	if err != nil {
		return nil, err
	}
	acct, err := serverAccount()
	if err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(s.logFile(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("postgres log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", s.DataDir)
	cmd.Env = serverEnviron()
	cmd.SysProcAttr = acct.sysProcAttr()
	cmd.SysProcAttr.Setpgid = true
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := startChild(cmd)
	if err != nil {
		return nil, err
	}
	s.setProc(p)
	return p, nil
}

func (s *Server) start(ctx context.Context) error {
	if p := s.current(); p != nil {
		return fmt.Errorf("postgres %s: already running (pid %d)", s.DataDir, p.pid)
	}
	if pm, err := findPostmaster(s.DataDir); err != nil {
		return fmt.Errorf("start postgres %s: %w", s.DataDir, err)
	} else if pm != nil {
		return fmt.Errorf("postgres %s: already running as pid %d, which this Server did not start: Adopt it, or stop it", s.DataDir, pm.pid)
	}
	if err := s.privateDataDir(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	// Backends of a postmaster that died would stop this start.
	if err := s.quitLeftovers(); err != nil {
		return fmt.Errorf("start postgres %s: %w", s.DataDir, err)
	}
	p, err := s.spawn()
	if err != nil {
		return fmt.Errorf("start postgres %s: %w", s.DataDir, err)
	}

	if err := s.waitReady(ctx, p); err != nil {
		if p.exited() {
			s.setProc(nil)
			return fmt.Errorf("postgres %s exited during start (%v); last log lines:\n%s", s.DataDir, p.exitError(), tail(s.logFile(), 15))
		}
		stopErr := s.stop(context.Background())
		return errors.Join(fmt.Errorf("postgres %s not ready: %w; last log lines:\n%s", s.DataDir, err, tail(s.logFile(), 15)), stopErr)
	}
	return nil
}

// waitReady pings until the server answers. It gives up when the process
// exits, when ctx ends, and at once when the server refuses us (a wrong
// password does not fix itself); "starting up" and the like are waited out.
func (s *Server) waitReady(ctx context.Context, p *process) error {
	for {
		pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := s.Ping(pingCtx)
		cancel()
		if err == nil {
			return nil
		}
		if refusesUs(err) {
			return err
		}
		select {
		case <-p.done:
			return fmt.Errorf("postgres pid %d exited: %v", p.pid, p.exitError())
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// refusesUs reports whether the server answered a connection with an error
// that waiting will not fix: authentication failed (class 28), or the
// database is missing.
func refusesUs(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "28") || pgErr.Code == codeInvalidCatalogName)
}

// Restart stops the server (as Stop does) and starts it again (as Start
// does). A server that is not running is just started.
func (s *Server) Restart(ctx context.Context) error {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	return s.restart(ctx)
}

func (s *Server) restart(ctx context.Context) error {
	if err := s.stop(ctx); err != nil {
		return fmt.Errorf("restart postgres %s: %w", s.DataDir, err)
	}
	if err := s.start(ctx); err != nil {
		return fmt.Errorf("restart postgres %s: %w", s.DataDir, err)
	}
	return nil
}

// PID returns the postmaster's process id, or 0 when it is not running.
func (s *Server) PID() int {
	if p := s.current(); p != nil {
		return p.pid
	}
	return 0
}

// Exited returns a channel closed when the running (started or adopted)
// process exits; it is already closed when nothing runs. Each Start, Adopt
// or Restart makes a new process, so ask again afterwards.
func (s *Server) Exited() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return closedChan
	}
	return s.proc.done
}

// quitLeftovers ends the processes a dead postmaster left in DataDir, but
// only while no postmaster runs there: otherwise they are its backends.
func (s *Server) quitLeftovers() error {
	pm, err := findPostmaster(s.DataDir)
	if err != nil || pm != nil {
		return err
	}
	return quitLeftovers(s.DataDir)
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// current returns the running process, or nil.
func (s *Server) current() *process {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || s.proc.exited() {
		return nil
	}
	return s.proc
}

func (s *Server) setProc(p *process) {
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
}

// Stop shuts the server down: a fast shutdown (clients disconnected, a
// checkpoint written), then an immediate one if that has not finished within
// 30 seconds or when ctx ends, then SIGKILL. It stops only the process that
// this Server started or adopted, by PID; for an adopted one, which is not
// our child, it polls for the exit.
func (s *Server) Stop(ctx context.Context) error {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	return s.stop(ctx)
}

func (s *Server) stop(ctx context.Context) error {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	if p.exited() {
		// It died before we asked (a crash): what it left behind must not
		// outlive Stop.
		s.setProc(nil)
		return s.quitLeftovers()
	}
	p.markStopping()
	steps := []struct {
		sig  syscall.Signal
		wait time.Duration
		ctx  bool // ctx ending cuts the wait short
	}{
		{syscall.SIGINT, 30 * time.Second, true},  // fast shutdown
		{syscall.SIGQUIT, 5 * time.Second, false}, // immediate shutdown
		{syscall.SIGKILL, 5 * time.Second, false},
	}
	for _, step := range steps {
		if err := p.signal(step.sig); err != nil {
			return err
		}
		var cut <-chan struct{}
		if step.ctx {
			cut = ctx.Done()
		}
		select {
		case <-p.done:
			s.setProc(nil)
			if step.sig == syscall.SIGKILL {
				// Its backends outlive a killed postmaster.
				return s.quitLeftovers()
			}
			return nil
		case <-time.After(step.wait):
		case <-cut:
		}
	}
	return fmt.Errorf("postgres pid %d did not exit after SIGKILL", p.pid)
}

// URL returns a connection URI for the superuser and a database: through
// SocketDir when there is one, otherwise over TCP.
func (s *Server) URL(database string) string {
	if s.SocketDir != "" {
		return ConnURL{Host: s.SocketDir, Port: s.Port, User: Superuser, Password: s.Password, Database: database}.String()
	}
	return s.RoleURL(Superuser, s.Password, database)
}

// RoleURL returns a connection URI over TCP for a role, its password and a
// database, as an application would use it: verifying the server with the
// CA when the server has TLS.
func (s *Server) RoleURL(role, password, database string) string {
	c := ConnURL{Host: s.listenAddress(), Port: s.Port, User: role, Password: password, Database: database}
	if s.TLS != nil {
		c.RootCert = s.TLS.CAFile
	}
	return c.String()
}

// Ping connects as the superuser and runs a query: the server is healthy
// only if it authenticates and answers.
func (s *Server) Ping(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var one int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}

// serverEnviron is the environment the postmaster (and so every backend,
// archive_command and COPY ... PROGRAM) gets: what locale, time zone and
// finding programs need, and nothing else. The caller's environment may
// hold secrets, such as an object store's keys, that a superuser could
// otherwise read from /proc/PID/environ.
func serverEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name == "PATH" || name == "LANG" || name == "LANGUAGE" || name == "TZ" || strings.HasPrefix(name, "LC_") {
			env = append(env, kv)
		}
	}
	return env
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
