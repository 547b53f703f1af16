package localruntime

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/safepath"
	"github.com/outpostdata/outpost/postgres"
)

// PortAllocator hands out and remembers instance ports (controldb does).
type PortAllocator interface {
	AllocatePort(ctx context.Context, namespace, name string, from int) (int, error)
	ReleasePort(ctx context.Context, namespace, name string) error
}

// Runtime runs instances as local postgres processes.
type Runtime struct {
	// StateDir holds instances/<namespace>/<name>.
	StateDir string
	// Ports allocates each instance's port.
	Ports PortAllocator
	// FirstPort is where port allocation starts; 0 means 5432.
	FirstPort int
	// ListenAddress of every instance; empty means 127.0.0.1. Change it with
	// SetListenAddress once the runtime is in use.
	ListenAddress string
	// Log receives what happens to the servers.
	Log *slog.Logger
	// OnChange, if set, is called when a server starts, dies or comes back,
	// so the controller can look again at once.
	OnChange func()
	// ObjectStores finds the ObjectStores that spec.backup and
	// spec.bootstrap.recovery name; without it those fail with an error.
	ObjectStores ObjectStoreLookup
	// Executable is the outpost binary that archive_command and
	// restore_command run; empty means this process's executable.
	Executable string

	mu        sync.Mutex
	ca        *postgres.CA // the site CA, loaded on first use
	instances map[string]*instance
	restores  map[string]*restoreJob
}

var _ controller.Runtime = (*Runtime)(nil)

// instance is one server the runtime supervises.
type instance struct {
	dir        string
	creds      Credentials
	server     *postgres.Server
	supervisor *postgres.Supervisor
	stop       context.CancelFunc
	done       chan error
	// applied is the hash of the spec whose roles, databases, extensions
	// and parameters are in place; setup runs again only when it changes.
	applied  string
	pgvector string
}

// InstanceDir is where an instance's data and credentials live. A name
// that would leave the instances directory is refused, naming the field.
func InstanceDir(stateDir, namespace, name string) (string, error) {
	return safepath.Join(stateDir, safepath.Fixed("instances"), safepath.Part{Field: "metadata.namespace", Value: namespace}, safepath.Part{Field: "metadata.name", Value: name})
}

func (r *Runtime) listenAddress() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.listenAddressLocked()
}

func (r *Runtime) listenAddressLocked() string {
	if r.ListenAddress != "" {
		return r.ListenAddress
	}
	return "127.0.0.1"
}

// SetListenAddress changes where instances listen (the DataController's
// localRuntime.listenAddress); each instance moves at its next reconcile.
func (r *Runtime) SetListenAddress(addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ListenAddress = addr
}

func (r *Runtime) firstPort() int {
	if r.FirstPort != 0 {
		return r.FirstPort
	}
	return 5432
}

// EnsureInstance creates the instance on first sight (credentials, port,
// initdb), keeps its server supervised, and once it accepts connections puts
// roles, databases, extensions and parameters in place.
func (r *Runtime) EnsureInstance(ctx context.Context, inst *outpostv1.PostgresInstance) (controller.InstanceObservation, error) {
	in, err := r.load(ctx, inst)
	if re := (*restoringError)(nil); errors.As(err, &re) {
		return controller.InstanceObservation{Reason: "Restoring", Message: re.Error()}, nil
	}
	if err != nil {
		return controller.InstanceObservation{}, err
	}
	if listen := r.listenAddress(); in.server.ListenAddress != listen {
		if in, err = r.relisten(ctx, inst, in, listen); err != nil {
			return controller.InstanceObservation{}, err
		}
	}
	obs := controller.InstanceObservation{
		Endpoint:          net.JoinHostPort(advertisedHost(in.server.ListenAddress), strconv.Itoa(in.creds.Port)),
		CredentialsSecret: inst.Name + "-app",
		Restarts:          int32(in.supervisor.Restarts()),
		PgvectorVersion:   in.pgvector,
	}
	if !in.supervisor.Ready() {
		obs.Reason, obs.Message = "Starting", "waiting for PostgreSQL to accept connections"
		if err := in.supervisor.LastError(); err != nil {
			obs.Message += ": " + err.Error()
			// If it failed to start with the settings it has, the next
			// attempt gets the spec's current ones, which may fix it.
			if err := r.refreshStoppedConfig(in.server, inst); err != nil {
				return obs, err
			}
		}
		return obs, nil
	}
	if err := r.rotateServerCert(ctx, in, inst); err != nil {
		return obs, err
	}
	key := controller.DesiredServerSettings(inst).Key()
	if changed, err := r.syncArchiveSettings(ctx, in, inst); err != nil {
		return obs, err
	} else if changed {
		in.applied = ""
	}
	if in.applied != key {
		if err := r.setup(ctx, in, inst); err != nil {
			return obs, err
		}
		in.applied = key
		obs.PgvectorVersion = in.pgvector
	}
	obs.Ready = in.supervisor.Ready()
	if !obs.Ready {
		obs.Reason, obs.Message = "Restarting", "PostgreSQL is restarting"
		return obs, nil
	}
	if obs.Archiving, err = r.watchArchiving(ctx, in, inst); err != nil {
		// The server runs; what could not be read leaves the WALArchiving
		// condition as it was, and the log says why.
		r.Log.Warn("cannot watch WAL archiving", "instance", inst.Namespace+"/"+inst.Name, "err", err)
	}
	return obs, nil
}

// load returns the supervised instance, creating, initialising and starting
// it if this runtime has not seen it yet.
func (r *Runtime) load(ctx context.Context, inst *outpostv1.PostgresInstance) (*instance, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := inst.Namespace + "/" + inst.Name
	if in, ok := r.instances[key]; ok {
		return in, nil
	}
	dir, err := InstanceDir(r.StateDir, inst.Namespace, inst.Name)
	if err != nil {
		return nil, err
	}
	creds, err := r.loadOrCreateCredentials(ctx, dir, inst)
	if err != nil {
		return nil, err
	}
	superuserPassword, err := ReadSuperuser(dir)
	if err != nil {
		return nil, err
	}
	listen := r.listenAddressLocked()
	if host := connectHost(listen); creds.Host != host || creds.SSLRootCert != CAFile(r.StateDir) {
		if creds.Host != host {
			// The listen address changed while no controller watched: a
			// server still running on the old one is stopped, to start on
			// the new.
			old := &postgres.Server{DataDir: filepath.Join(dir, "data"), ListenAddress: creds.Host, Port: creds.Port,
				Password: superuserPassword, SocketDir: SocketDir(dir)}
			if adopted, err := old.Adopt(ctx); err == nil && adopted {
				if err := old.Stop(ctx); err != nil {
					return nil, fmt.Errorf("stop %s to change its listen address: %w", key, err)
				}
			}
		}
		creds.Host, creds.SSLRootCert = host, CAFile(r.StateDir)
		if err := writeCredentials(dir, creds); err != nil {
			return nil, fmt.Errorf("write credentials of %s: %w", key, err)
		}
	}
	tlsFiles, err := r.serverTLS(dir, inst.Name, listen)
	if err != nil {
		return nil, err
	}
	srv := &postgres.Server{
		DataDir:       filepath.Join(dir, "data"),
		ListenAddress: listen,
		Port:          creds.Port,
		Password:      superuserPassword,
		LogFile:       filepath.Join(dir, "postgres.log"),
		TLS:           tlsFiles,
		SocketDir:     SocketDir(dir),
	}
	if srv.ManagedSettings, err = r.archiveSettings(ctx, inst, dir); err != nil {
		// The server runs without archiving rather than not at all; the
		// error shows in the instance's status until it is fixed.
		r.Log.Warn("WAL archiving not configured", "instance", key, "err", err)
	}
	// A restore under way has already extracted PG_VERSION: the job, not
	// the data directory, says whether it is done.
	if _, restoring := r.restores[key]; inst.Spec.Bootstrap.Recovery != nil && (!srv.Initialized() || restoring) {
		if err := r.restoreInBackground(inst, dir, srv); err != nil {
			return nil, err
		}
	}
	if !srv.Initialized() {
		if err := checkFreeSpace(dir, inst.Spec.Storage.Size.Value()); err != nil {
			return nil, err
		}
		// A data directory without PG_VERSION is what an interrupted
		// initdb left; it holds no data yet.
		if err := os.RemoveAll(srv.DataDir); err != nil {
			return nil, err
		}
		r.Log.Info("initialising instance", "instance", key, "dir", srv.DataDir)
		if err := srv.InitDB(ctx); err != nil {
			return nil, err
		}
		// A new server starts with Outpost's own settings only. The user's
		// parameters follow once it runs, through ApplyParameters, which has
		// PostgreSQL check each one and puts the previous file back if it
		// refuses one; a typo then cannot keep the server from starting.
		if err := srv.WriteConfig(controller.ResourceParameters(inst)); err != nil {
			return nil, err
		}
	} else if err := r.refreshStoppedConfig(srv, inst); err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(context.Background())
	in := &instance{
		dir:    dir,
		creds:  creds,
		server: srv,
		supervisor: &postgres.Supervisor{
			Server:   srv,
			Logger:   r.Log.With("instance", key),
			OnChange: r.OnChange,
		},
		stop: stop,
		done: make(chan error, 1),
	}
	go func() { in.done <- in.supervisor.Run(runCtx) }()
	if r.instances == nil {
		r.instances = map[string]*instance{}
	}
	r.instances[key] = in
	return in, nil
}

func (r *Runtime) loadOrCreateCredentials(ctx context.Context, dir string, inst *outpostv1.PostgresInstance) (Credentials, error) {
	creds, err := ReadCredentials(dir)
	if err == nil {
		return creds, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return creds, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return creds, err
	}
	port, err := r.Ports.AllocatePort(ctx, inst.Namespace, inst.Name, r.firstPort())
	if err != nil {
		return creds, err
	}
	want := controller.DesiredServerSettings(inst)
	creds = Credentials{
		Host:        connectHost(r.listenAddressLocked()),
		Port:        port,
		Database:    want.Database,
		Username:    want.Owner,
		Password:    postgres.GeneratePassword(),
		SSLRootCert: CAFile(r.StateDir),
	}
	// The superuser's file first: credentials without it would be an
	// instance nobody can manage.
	if err := writeSuperuser(dir, postgres.GeneratePassword()); err != nil {
		return creds, fmt.Errorf("write superuser credentials of %s/%s: %w", inst.Namespace, inst.Name, err)
	}
	if err := writeCredentials(dir, creds); err != nil {
		return creds, fmt.Errorf("write credentials of %s/%s: %w", inst.Namespace, inst.Name, err)
	}
	return creds, nil
}

// setup puts the parameters, the application role, databases and
// extensions in place. Every step is idempotent.
func (r *Runtime) setup(ctx context.Context, in *instance, inst *outpostv1.PostgresInstance) error {
	want := controller.DesiredServerSettings(inst)
	restarted, err := in.server.ApplyParameters(ctx, want.Parameters)
	if err != nil {
		return fmt.Errorf("spec.parameters: %w", err)
	}
	if restarted {
		r.Log.Info("restarted to apply parameters", "instance", inst.Namespace+"/"+inst.Name)
	}
	// The role and database are the ones the credentials file was written
	// with, which a later change of spec.bootstrap does not rename.
	pgvector, err := in.server.EnsureAppObjects(ctx, postgres.AppObjects{
		Owner: in.creds.Username, Password: in.creds.Password,
		Databases:  append([]string{in.creds.Database}, want.Databases...),
		Extensions: want.Extensions,
	})
	if err != nil {
		return err
	}
	if pgvector != "" {
		in.pgvector = pgvector
	}
	return nil
}

// DeleteInstance stops the server, adopting it first if another controller
// process started it, and removes its data when deletionPolicy is Delete.
func (r *Runtime) DeleteInstance(ctx context.Context, inst *outpostv1.PostgresInstance) error {
	key := inst.Namespace + "/" + inst.Name
	dir, err := InstanceDir(r.StateDir, inst.Namespace, inst.Name)
	if err != nil {
		return err
	}
	r.stopRestore(key)
	r.mu.Lock()
	in, ok := r.instances[key]
	delete(r.instances, key)
	r.mu.Unlock()
	if ok {
		in.stop()
		if err := <-in.done; err != nil {
			return fmt.Errorf("stop %s: %w", key, err)
		}
	} else if creds, err := ReadCredentials(dir); err == nil {
		password, err := ReadSuperuser(dir)
		if err != nil {
			return fmt.Errorf("stop %s: %w", key, err)
		}
		// Whatever it listens on, a server answers on its socket.
		srv := &postgres.Server{DataDir: filepath.Join(dir, "data"), ListenAddress: creds.Host, Port: creds.Port,
			Password: password, SocketDir: SocketDir(dir)}
		if adopted, err := srv.Adopt(ctx); err != nil {
			return fmt.Errorf("stop %s: %w", key, err)
		} else if adopted {
			if err := srv.Stop(ctx); err != nil {
				return fmt.Errorf("stop %s: %w", key, err)
			}
		}
	}
	if inst.Spec.DeletionPolicy != outpostv1.DeletionDelete {
		r.Log.Info("instance stopped, data kept", "instance", key, "dir", dir)
		return nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove data of %s: %w", key, err)
	}
	r.Log.Info("instance stopped and its data removed", "instance", key)
	return r.Ports.ReleasePort(ctx, inst.Namespace, inst.Name)
}

// refreshStoppedConfig writes the desired settings, with the current listen
// address and port, for a server that is not running, so its next start uses
// them. A running server is left alone: setup applies them with checks.
func (r *Runtime) refreshStoppedConfig(srv *postgres.Server, inst *outpostv1.PostgresInstance) error {
	running, err := srv.Running()
	if err != nil || running {
		return err
	}
	return srv.WriteConfig(controller.DesiredServerSettings(inst).Parameters)
}

// relisten moves an instance to a new listen address: the supervisor stops
// the server, and load writes the new address into the credentials and the
// settings before a new supervisor starts it there.
func (r *Runtime) relisten(ctx context.Context, inst *outpostv1.PostgresInstance, in *instance, listen string) (*instance, error) {
	key := inst.Namespace + "/" + inst.Name
	r.Log.Info("moving instance to a new listen address", "instance", key, "from", in.server.ListenAddress, "to", listen)
	r.mu.Lock()
	delete(r.instances, key)
	r.mu.Unlock()
	in.stop()
	if err := <-in.done; err != nil {
		return nil, fmt.Errorf("stop %s to change its listen address: %w", key, err)
	}
	return r.load(ctx, inst)
}

// connectHost is the host clients on this host use to reach a server
// listening on addr: the address itself, or loopback when it listens on
// every address.
func connectHost(addr string) string {
	ip := net.ParseIP(addr)
	switch {
	case ip == nil || !ip.IsUnspecified():
		return addr
	case ip.To4() != nil:
		return "127.0.0.1"
	default:
		return "::1"
	}
}

// advertisedHost is the host other machines use: the listen address, or
// this host's name when it listens on every address.
func advertisedHost(addr string) string {
	if ip := net.ParseIP(addr); ip != nil && ip.IsUnspecified() {
		if name, err := os.Hostname(); err == nil {
			return name
		}
	}
	return addr
}

// Shutdown stops every server this runtime supervises, in parallel, with a
// fast shutdown each.
func (r *Runtime) Shutdown() error {
	r.mu.Lock()
	instances := r.instances
	r.instances = nil
	restores := make([]string, 0, len(r.restores))
	for key := range r.restores {
		restores = append(restores, key)
	}
	r.mu.Unlock()
	for _, key := range restores {
		r.stopRestore(key)
	}
	var errs []error
	for _, in := range instances {
		in.stop()
	}
	for key, in := range instances {
		if err := <-in.done; err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", key, err))
		}
	}
	return errors.Join(errs...)
}
