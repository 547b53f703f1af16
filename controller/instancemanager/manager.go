package instancemanager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"github.com/outpostdata/outpost/controller/archiving"
	"github.com/outpostdata/outpost/postgres"
)

// Options configure a Manager. Passwords come from the environment in a
// pod (see EnvSuperuserPassword) and are never logged.
type Options struct {
	// DataDir is the data directory; it is created by initdb, or by a
	// restore when the configuration has a recovery section, on the first
	// start.
	DataDir string
	// ConfigFile is the mounted instance.json; it is re-read every
	// ReloadInterval and applied when it changes.
	ConfigFile string
	// ListenAddress of postgres; empty means 0.0.0.0 (every address of
	// the pod).
	ListenAddress string
	// HTTPAddr serves /livez, /readyz and /metrics.
	HTTPAddr string
	// SuperuserPassword and AppPassword are the credentials Secret's.
	SuperuserPassword, AppPassword string
	// ReloadInterval is how often ConfigFile is read again; 0 means 10s.
	ReloadInterval time.Duration
	Log            *slog.Logger
	// BackupToken authenticates POST /backup (the Secret's backup-token);
	// empty refuses every request.
	BackupToken string
	// Executable is the outpost binary archive_command runs; empty means
	// this process's.
	Executable string
	// TLSDir holds the server certificate (tls.crt, tls.key) and the site
	// CA (ca.crt): the instance's TLS Secret, mounted. It is read again
	// every ReloadInterval, and a new certificate is served after a reload.
	TLSDir string
	// SocketDir is where postgres puts its Unix socket, the one way the
	// superuser's password is accepted; the manager connects there.
	SocketDir string
}

// Manager runs one server. Create it with New and call Run once.
type Manager struct {
	opts   Options
	server *postgres.Server
	super  *postgres.Supervisor
	start  time.Time

	// backupMu lets one POST /backup run at a time.
	backupMu sync.Mutex

	mu        sync.Mutex
	applied   *Config // the configuration in place; nil until setup succeeded
	setupErr  error
	lastAlive time.Time // when postgres last answered a health query
	pgvector  string
	// archiver is what the archiver was last seen doing; archiverSeen is
	// set once GET /archiver served it.
	archiver     *archiving.Status
	archiverSeen bool
}

// New checks the options and reads the configuration once, so that a pod
// with a broken ConfigMap fails at once with a message naming the field.
func New(opts Options) (*Manager, error) {
	if opts.DataDir == "" {
		return nil, errors.New("instance manager: the data directory is not set")
	}
	if opts.SuperuserPassword == "" || opts.AppPassword == "" {
		return nil, fmt.Errorf("instance manager: %s and %s must be set (the pod takes them from the instance's credentials Secret)", EnvSuperuserPassword, EnvAppPassword)
	}
	if opts.ListenAddress == "" {
		opts.ListenAddress = "0.0.0.0"
	}
	if opts.TLSDir == "" || opts.SocketDir == "" {
		return nil, errors.New("instance manager: the TLS directory (--tls-dir) and the socket directory (--socket-dir) must be set")
	}
	if opts.ReloadInterval == 0 {
		opts.ReloadInterval = 10 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	cfg, err := ReadConfig(opts.ConfigFile)
	if err != nil {
		return nil, err
	}
	srv := &postgres.Server{
		DataDir:       opts.DataDir,
		ListenAddress: opts.ListenAddress,
		Port:          cfg.Port,
		Password:      opts.SuperuserPassword,
		LogFile:       filepath.Join(filepath.Dir(opts.DataDir), "postgres.log"),
		SocketDir:     opts.SocketDir,
	}
	m := &Manager{opts: opts, server: srv, start: time.Now()}
	m.super = &postgres.Supervisor{Server: srv, Logger: opts.Log.With("component", "postgres")}
	return m, nil
}

// Run initialises (or restores) the data directory on the first start, supervises
// postgres, keeps the configuration applied and serves HTTP until ctx
// ends; then it stops postgres cleanly (fast shutdown) and returns.
func (m *Manager) Run(ctx context.Context) error {
	log := m.opts.Log
	cfg, err := ReadConfig(m.opts.ConfigFile)
	if err != nil {
		return err
	}
	if _, err := m.installTLS(); err != nil {
		return err
	}
	if !m.server.Initialized() {
		// A directory without PG_VERSION is what an interrupted initdb
		// left; it holds no data yet.
		if err := os.RemoveAll(m.server.DataDir); err != nil {
			return fmt.Errorf("clear the unfinished data directory %s: %w", m.server.DataDir, err)
		}
		if cfg.Recovery != nil {
			// A failed restore ends the process before /readyz is served,
			// so the pod is never ready; its restart tries again.
			log.Info("restoring the data directory", "dataDir", m.server.DataDir, "source", cfg.Recovery.Namespace+"/"+cfg.Recovery.Instance)
			if err := m.restore(ctx, cfg.Recovery); err != nil {
				return err
			}
		} else {
			log.Info("initialising the data directory", "dataDir", m.server.DataDir)
			if err := m.server.InitDB(ctx); err != nil {
				return err
			}
		}
	}
	// The server starts with Outpost's own settings only; the user's
	// parameters follow through ApplyParameters once it runs, which has
	// PostgreSQL check each one, so a typo cannot keep it from starting.
	if err := m.configureArchiving(cfg); err != nil {
		return err
	}
	if err := m.server.WriteConfig(nil); err != nil {
		return err
	}

	lis, err := net.Listen("tcp", m.opts.HTTPAddr)
	if err != nil {
		return fmt.Errorf("health and metrics endpoint %s: %w", m.opts.HTTPAddr, err)
	}
	httpSrv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 5 * time.Second}
	httpDone := make(chan error, 1)
	go func() { httpDone <- httpSrv.Serve(lis) }()
	log.Info("serving health and metrics", "addr", lis.Addr().String())

	superDone := make(chan error, 1)
	go func() { superDone <- m.super.Run(ctx) }()

	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	lastRead := time.Now()
	for {
		select {
		case err := <-superDone:
			shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			httpSrv.Shutdown(shutdownCtx)
			<-httpDone
			if err != nil {
				return fmt.Errorf("stop postgres: %w", err)
			}
			log.Info("postgres stopped cleanly")
			return nil
		case <-ticker.C:
		}
		if ctx.Err() != nil {
			continue // waiting for the supervisor's shutdown
		}
		reread := time.Since(lastRead) >= m.opts.ReloadInterval
		if reread {
			lastRead = time.Now()
			next, err := ReadConfig(m.opts.ConfigFile)
			if err != nil {
				log.Error("keeping the configuration in place", "err", err)
			} else {
				cfg = next
			}
			m.reloadTLS(ctx)
		}
		if !m.super.Ready() {
			continue
		}
		m.mu.Lock()
		current := m.applied
		m.mu.Unlock()
		if current != nil && reflect.DeepEqual(*current, cfg) {
			if reread {
				m.watchArchiving(ctx)
			}
			continue
		}
		err := m.setup(ctx, cfg)
		m.mu.Lock()
		m.setupErr = err
		if err == nil {
			c := cfg
			m.applied = &c
		}
		m.mu.Unlock()
		if err != nil {
			log.Error("applying the configuration failed; retrying", "err", err)
		} else {
			log.Info("configuration applied", "databases", cfg.AllDatabases(), "extensions", cfg.Extensions)
		}
	}
}

// setup puts the port, parameters, application role, databases and
// extensions in place. Every step is idempotent.
func (m *Manager) setup(ctx context.Context, cfg Config) error {
	if cfg.Port != m.server.Port {
		// The port is fixed for the life of the process; the pod template
		// changes with it, so a new pod brings the new port.
		m.opts.Log.Warn("the configured port changed; it takes effect when the pod restarts", "running", m.server.Port, "configured", cfg.Port)
	}
	if restarted, err := m.server.ApplyParameters(ctx, cfg.Parameters); err != nil {
		return fmt.Errorf("parameters: %w", err)
	} else if restarted {
		m.opts.Log.Info("restarted postgres to apply parameters")
	}
	pgvector, err := m.server.EnsureAppObjects(ctx, postgres.AppObjects{
		Owner: cfg.Owner, Password: m.opts.AppPassword,
		Databases: cfg.AllDatabases(), Extensions: cfg.Extensions,
	})
	if err != nil {
		return err
	}
	if pgvector != "" {
		m.mu.Lock()
		m.pgvector = pgvector
		m.mu.Unlock()
	}
	return nil
}

// Status is what /readyz reports, as JSON.
type Status struct {
	Ready           bool   `json:"ready"`
	Alive           bool   `json:"alive"`
	PostgresUp      bool   `json:"postgresUp"`
	Message         string `json:"message,omitempty"`
	Restarts        int    `json:"restarts"`
	PgvectorVersion string `json:"pgvectorVersion,omitempty"`
}

// livenessGrace is how long postgres may fail health queries before the
// pod is reported dead: restarts after a crash and initdb take a while.
const livenessGrace = 2 * time.Minute

// check asks postgres itself over a real connection.
func (m *Manager) check(ctx context.Context) Status {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	pingErr := m.server.Ping(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	if pingErr == nil {
		m.lastAlive = time.Now()
	}
	last := m.lastAlive
	if last.IsZero() {
		last = m.start
	}
	st := Status{
		Alive:           pingErr == nil || time.Since(last) < livenessGrace,
		PostgresUp:      pingErr == nil,
		Restarts:        m.super.Restarts(),
		PgvectorVersion: m.pgvector,
	}
	switch {
	case pingErr != nil:
		st.Message = "postgres does not answer: " + pingErr.Error()
	case m.applied == nil && m.setupErr != nil:
		st.Message = "configuration not applied: " + m.setupErr.Error()
	case m.applied == nil:
		st.Message = "applying the configuration"
	default:
		st.Ready = true
	}
	return st
}

// Handler serves /livez, /readyz and /metrics, and POST /backup for the
// controller.
func (m *Manager) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, m.check(r.Context()), func(s Status) bool { return s.Alive })
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, m.check(r.Context()), func(s Status) bool { return s.Ready })
	})
	mux.Handle("GET /metrics", m.metricsHandler())
	mux.HandleFunc("POST /backup", m.serveBackup)
	mux.HandleFunc("GET /archiver", m.serveArchiver)
	return mux
}

func writeStatus(w http.ResponseWriter, st Status, ok func(Status) bool) {
	w.Header().Set("Content-Type", "application/json")
	if !ok(st) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	json.NewEncoder(w).Encode(st)
}
