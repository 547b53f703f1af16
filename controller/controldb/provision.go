package controldb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outpostdata/outpost/postgres"
)

// Database is the name of the database that holds the controller's state.
const Database = "outpost"

// credentials is what a state directory records about its controldb, 0600.
type credentials struct {
	Port     int    `json:"port"`
	Password string `json:"password"`
}

func credentialsPath(dir string) string { return filepath.Join(dir, "credentials.json") }

// Local is a controldb the controller runs itself, under dir.
type Local struct {
	*DB
	supervisor *postgres.Supervisor
	stop       context.CancelFunc
	done       chan error
}

// StartLocal provisions (on first use) and starts the controller's own
// PostgreSQL under dir, adopting one already running there, and returns it
// migrated and connected. The server runs until Stop.
func StartLocal(ctx context.Context, dir string, log *slog.Logger) (*Local, error) {
	creds, err := loadOrCreateCredentials(dir)
	if err != nil {
		return nil, err
	}
	srv := &postgres.Server{
		DataDir:  filepath.Join(dir, "data"),
		Port:     creds.Port,
		Password: creds.Password,
	}
	if !srv.Initialized() {
		log.Info("initialising controldb", "dir", srv.DataDir)
		if err := srv.InitDB(ctx); err != nil {
			return nil, fmt.Errorf("controldb: %w", err)
		}
	}
	if err := srv.WriteConfig(map[string]string{"shared_buffers": "32MB", "max_connections": "50"}); err != nil {
		return nil, fmt.Errorf("controldb: %w", err)
	}

	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	l := &Local{
		supervisor: &postgres.Supervisor{Server: srv, Logger: log.With("component", "controldb")},
		stop:       stop,
		done:       make(chan error, 1),
	}
	go func() { l.done <- l.supervisor.Run(runCtx) }()

	if err := waitReady(ctx, l.supervisor, l.done); err != nil {
		stop()
		return nil, fmt.Errorf("controldb did not become ready: %w", err)
	}
	if err := ensureDatabase(ctx, srv); err != nil {
		l.Stop()
		return nil, err
	}
	db, err := Open(ctx, srv.URL(Database))
	if err != nil {
		l.Stop()
		return nil, err
	}
	l.DB = db
	return l, nil
}

// Stop closes the connections and shuts the server down.
func (l *Local) Stop() error {
	if l.DB != nil {
		l.DB.Close()
	}
	l.stop()
	return <-l.done
}

func waitReady(ctx context.Context, sup *postgres.Supervisor, done <-chan error) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for !sup.Ready() {
		select {
		case err := <-done:
			return errors.Join(errors.New("postgres supervisor stopped"), err)
		case <-ctx.Done():
			return errors.Join(ctx.Err(), sup.LastError())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

func ensureDatabase(ctx context.Context, srv *postgres.Server) error {
	conn, err := pgx.Connect(ctx, srv.URL("postgres"))
	if err != nil {
		return fmt.Errorf("controldb: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := postgres.EnsureDatabase(ctx, conn, Database, postgres.Superuser); err != nil {
		return fmt.Errorf("controldb: %w", err)
	}
	return nil
}

// loadOrCreateCredentials reads dir/credentials.json, or creates it with a
// new password and a free port on first use. The port is kept so that the
// controldb URL stays the same across restarts.
func loadOrCreateCredentials(dir string) (credentials, error) {
	var c credentials
	path := credentialsPath(dir)
	b, err := os.ReadFile(path)
	if err == nil {
		if err := json.Unmarshal(b, &c); err != nil || c.Port == 0 || c.Password == "" {
			return c, fmt.Errorf("controldb credentials %s are damaged (%v): restore the file or remove the controldb directory to start afresh", path, err)
		}
		return c, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return c, fmt.Errorf("controldb credentials: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return c, fmt.Errorf("controldb: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return c, fmt.Errorf("controldb: %w", err)
	}
	c = credentials{Port: port, Password: postgres.GeneratePassword()}
	b, _ = json.MarshalIndent(c, "", "  ")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return c, fmt.Errorf("controldb credentials: %w", err)
	}
	return c, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ConnectLocal connects to the controldb of a state directory that a
// running controller has started, for the CLI's read-only commands.
func ConnectLocal(ctx context.Context, dir string) (*DB, error) {
	b, err := os.ReadFile(credentialsPath(dir))
	if err != nil {
		return nil, fmt.Errorf("no controldb in %s (has `outpost up` run here?): %w", dir, err)
	}
	var c credentials
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("controldb credentials %s: %w", credentialsPath(dir), err)
	}
	srv := &postgres.Server{Port: c.Port, Password: c.Password}
	return Open(ctx, srv.URL(Database)+"&connect_timeout=2")
}

// Open connects to a controldb at url and brings its schema up to date.
func Open(ctx context.Context, url string) (*DB, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("controldb: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("controldb: %w", err)
	}
	db := &DB{Pool: pool}
	if err := db.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}
