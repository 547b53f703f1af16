package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Superuser is the name of the bootstrap superuser initdb creates.
const Superuser = "postgres"

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

	cmd  *exec.Cmd
	done chan struct{}
	err  error // why the process exited; read after done is closed
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

// WriteConfig writes the managed settings: the listen address and port,
// no Unix sockets (every client comes over TCP with a password), and the
// given parameters. It replaces whatever the previous call wrote.
func (s *Server) WriteConfig(parameters map[string]string) error {
	settings := map[string]string{
		"listen_addresses":        s.listenAddress(),
		"port":                    strconv.Itoa(s.Port),
		"unix_socket_directories": "",
	}
	for k, v := range parameters {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# Written by Outpost; edits are overwritten.\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = '%s'\n", k, strings.ReplaceAll(settings[k], "'", "''"))
	}
	path := filepath.Join(s.DataDir, managedConfFile)
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	acct, err := serverAccount()
	if err != nil {
		return err
	}
	return acct.own(path)
}

// Start starts postgres and waits until it accepts connections. If the
// server exits or ctx ends first, the error carries the end of its log.
func (s *Server) Start(ctx context.Context) error {
	if s.cmd != nil {
		return fmt.Errorf("postgres %s: already started (pid %d)", s.DataDir, s.cmd.Process.Pid)
	}
	bin, err := s.binDir()
	if err != nil {
		return err
	}
	acct, err := serverAccount()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(s.logFile(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("postgres log: %w", err)
	}
	defer logf.Close()

	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", s.DataDir)
	cmd.SysProcAttr = acct.sysProcAttr()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres %s: %w", s.DataDir, err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()

	for {
		pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := s.Ping(pingCtx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.done:
			s.cmd = nil
			return fmt.Errorf("postgres %s exited during start (%v); last log lines:\n%s", s.DataDir, s.err, tail(s.logFile(), 15))
		case <-ctx.Done():
			stopErr := s.Stop(context.Background())
			return errors.Join(fmt.Errorf("postgres %s not ready: %w (last error: %v); last log lines:\n%s", s.DataDir, ctx.Err(), err, tail(s.logFile(), 15)), stopErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// PID returns the server's process id, or 0 when it is not running.
func (s *Server) PID() int {
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Stop shuts the server down: a fast shutdown (clients disconnected, a
// checkpoint written), then an immediate one if that has not finished within
// 30 seconds or when ctx ends, then SIGKILL. It stops only the process that
// Start started.
func (s *Server) Stop(ctx context.Context) error {
	if s.cmd == nil {
		return nil
	}
	defer func() { s.cmd = nil }()
	steps := []struct {
		sig  syscall.Signal
		wait time.Duration
	}{
		{syscall.SIGINT, 30 * time.Second},
		{syscall.SIGQUIT, 5 * time.Second},
		{syscall.SIGKILL, 5 * time.Second},
	}
	for _, step := range steps {
		if err := s.cmd.Process.Signal(step.sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("stop postgres pid %d: %w", s.cmd.Process.Pid, err)
		}
		select {
		case <-s.done:
			return nil
		case <-time.After(step.wait):
		case <-ctx.Done():
		}
	}
	return fmt.Errorf("postgres pid %d did not exit after SIGKILL", s.cmd.Process.Pid)
}

// URL returns a connection URI for the superuser and a database.
func (s *Server) URL(database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(Superuser, s.Password),
		Host:     net.JoinHostPort(s.listenAddress(), strconv.Itoa(s.Port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
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
