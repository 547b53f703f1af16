package singlehost

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
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/controldb"
	"github.com/outpostdata/outpost/controller/dirsource"
	"github.com/outpostdata/outpost/controller/localruntime"
	"github.com/outpostdata/outpost/controller/safepath"
	"github.com/outpostdata/outpost/usageexport"
)

// UsageKey is the site's usage signing key, created 0600 on first start.
func (s StateDir) UsageKey() string { return filepath.Join(s.Root, "usage", "signing.key") }

// HubToken holds the site's hub token for direct mode on a single host
// (where a Kubernetes cluster would use the DataController's
// credentialsSecret).
func (s StateDir) HubToken() string { return filepath.Join(s.Root, "usage", "hub-token") }

// usageRun meters this host: the ledger the reconciler writes to, and the
// loop that runs the core's DataController reconciler (sampling,
// direct-mode streaming and the DataController's usage status) and stores
// the status in controldb. It is the reconciler's controller.SiteSource.
type usageRun struct {
	db     *controldb.DB
	sd     StateDir
	ledger *usageexport.Ledger
	core   *controller.DataControllerReconciler
	log    *slog.Logger
	site   atomic.Pointer[outpostv1.DataController]
	// kick wakes the loop when the DataController appears, goes or
	// changes, so a new site or interval takes effect at once rather than
	// after the interval in force.
	kick chan struct{}
	// events records the DataController's events; announced holds the
	// status and reason of each condition last announced.
	events    *dirsource.EventRecorder
	announced map[string]string
	// applying lists the instances the manifest source is reconciling
	// and has not stored yet (dirsource.Controller.Applying).
	applying func() []string
}

// announce records an event for every change of the conditions a user
// must act on: a clock that cannot be trusted, a batch the hub refused.
func (u *usageRun) announce(dc *outpostv1.DataController, st *outpostv1.DataControllerStatus) {
	for _, typ := range []string{usageexport.ConditionClockSkew, usageexport.ConditionUsageStreaming} {
		c := meta.FindStatusCondition(st.Conditions, typ)
		if c == nil {
			continue
		}
		kind := "Normal"
		if (c.Status == metav1.ConditionTrue) == (typ == usageexport.ConditionClockSkew) {
			kind = "Warning"
		}
		prev, seen := u.announced[typ]
		u.announced[typ] = string(c.Status) + c.Reason
		// A healthy start is no news.
		if prev == u.announced[typ] || (!seen && kind == "Normal") {
			continue
		}
		u.events.Event(dc, kind, c.Reason, typ+": "+c.Message)
	}
}

func startUsage(ctx context.Context, db *controldb.DB, sd StateDir, version string, log *slog.Logger) (*usageRun, error) {
	if err := usageexport.EnsureSchema(ctx, db.Pool); err != nil {
		return nil, err
	}
	key, err := usageexport.LoadOrCreateKey(sd.UsageKey())
	if err != nil {
		return nil, err
	}
	log = log.With("component", "usage")
	u := &usageRun{db: db, sd: sd, ledger: usageexport.NewLedger(db.Pool, nil), log: log, kick: make(chan struct{}, 1),
		events: &dirsource.EventRecorder{DB: db, Log: log}, announced: map[string]string{}}
	u.core = controller.NewDataControllerReconciler(&usageexport.SiteMeter{Pool: db.Pool, Key: key, Version: version, Metrics: usageMetrics, Log: log}, u)
	return u, nil
}

// DeclaredInstances lists the instances the manifests declare: those
// controldb holds and those a pass is storing. The orphan sweep closes any
// other uid still open in the ledger.
func (u *usageRun) DeclaredInstances(ctx context.Context) ([]usageexport.Declared, error) {
	var out []usageexport.Declared
	// First those being reconciled and not yet stored (a new instance
	// during its initdb): one that moves from there into controldb in
	// between is then found in controldb.
	if u.applying != nil {
		for _, uid := range u.applying() {
			out = append(out, usageexport.Declared{UID: uid})
		}
	}
	recs, err := u.db.Objects(ctx, "PostgresInstance")
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		out = append(out, usageexport.Declared{UID: r.UID})
	}
	return out, nil
}

// recorder is what the reconciler meters with. Until the manifest source's
// first pass is done (synced), a deleted instance is one whose manifest
// went while `outpost up` was stopped: when is not known (a deleted file
// has no mtime), so it is closed at the last time it was seen, and the
// hours while the controller was down are not billed for it. Instances
// still declared stay billed through the downtime: what is declared is
// what is billed.
func (u *usageRun) recorder(synced <-chan struct{}) controller.UsageRecorder {
	return hostRecorder{UsageLedger: controller.UsageLedger{Ledger: u.ledger}, synced: synced}
}

type hostRecorder struct {
	controller.UsageLedger
	synced <-chan struct{}
}

func (h hostRecorder) InstanceDeleted(ctx context.Context, inst *outpostv1.PostgresInstance) error {
	select {
	case <-h.synced:
		return h.UsageLedger.InstanceDeleted(ctx, inst)
	default:
		return h.Ledger.DeletedWhileAway(ctx, string(inst.UID))
	}
}

// setSite takes the DataController (nil when there is none) from each pass.
func (u *usageRun) setSite(dc *outpostv1.DataController) {
	old := u.site.Swap(dc)
	if (old == nil) != (dc == nil) || (dc != nil && !equality.Semantic.DeepEqual(old.Spec, dc.Spec)) {
		select {
		case u.kick <- struct{}{}:
		default:
		}
	}
}

// HubAccess reads the hub token from the state directory's file and the
// CA bundle its caSecret names. Neither failing is an error: the token is
// then empty, usage waits in the backlog, and Ready says there is no token.
func (u *usageRun) HubAccess(_ context.Context, dc *outpostv1.DataController) (usageexport.HubAccess, error) {
	var access usageexport.HubAccess
	if !controller.UsageSite(dc).Streams() {
		return access, nil
	}
	b, err := os.ReadFile(u.sd.HubToken())
	if err != nil {
		u.log.Warn("direct mode without a hub token: usage waits in the backlog", "file", u.sd.HubToken(), "err", err)
	}
	access.Token = strings.TrimSpace(string(b))
	if access.Client, err = hubClient(u.sd, dc); err != nil {
		// Without the CA the hub cannot be trusted: nothing is sent.
		u.log.Warn("usage waits in the backlog", "err", err)
		access.Token = ""
	}
	return access, nil
}

// run samples, streams (direct mode) and updates status every metering
// interval until ctx ends.
func (u *usageRun) run(ctx context.Context) {
	for {
		dc := u.site.Load()
		var err error
		if dc == nil {
			err = u.core.MeterWithoutSite(ctx)
		} else {
			// A copy: the manifest source holds dc, and the core writes
			// its status.
			dc = dc.DeepCopy()
			if _, err = u.core.Reconcile(ctx, dc); err == nil {
				err = u.writeStatus(ctx, dc, &dc.Status)
				u.announce(dc, &dc.Status)
			}
		}
		if err != nil && ctx.Err() == nil {
			u.log.Warn("cannot update DataController usage status", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-u.kick:
		case <-time.After(controller.MeteringInterval(dc)):
		}
	}
}

// hubClient refuses an http:// hub that allowInsecureHub does not permit,
// and is the client for a DataController whose hub certificate is
// signed by the CA of connectivity.hub.caSecret: on one host, as for an
// ObjectStore's caSecret, the file secrets/NAMESPACE/NAME/ca.crt in the
// state directory. Nil (the system roots) without a caSecret.
func hubClient(sd StateDir, dc *outpostv1.DataController) (*http.Client, error) {
	if err := controller.CheckHubTransport(dc.Spec.Connectivity.Hub); err != nil {
		return nil, err
	}
	ca := dc.Spec.Connectivity.Hub.CASecret
	if ca == nil {
		return nil, nil
	}
	file, err := localruntime.SecretFile(sd.Root, dc.Namespace, safepath.Part{Field: "spec.connectivity.hub.caSecret.name", Value: ca.Name}, "ca.crt")
	if err != nil {
		return nil, fmt.Errorf("DataController %s: %w", dc.Name, err)
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("DataController %s: connectivity.hub.caSecret %s: on a single host the CA bundle is the file %s: %w", dc.Name, ca.Name, file, err)
	}
	return usageexport.HubClient(pem, "connectivity.hub.caSecret "+ca.Name+" ("+file+")")
}

// writeStatus stores the usage status of the DataController dc into its
// record. Only the status fields are written, in one statement, so a
// manifest pass that stores the object at the same time keeps them (see
// controldb.PutObject).
func (u *usageRun) writeStatus(ctx context.Context, dc *outpostv1.DataController, st *outpostv1.DataControllerStatus) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	_, err = u.db.Pool.Exec(ctx, `UPDATE objects SET object = jsonb_set(object, '{status}', COALESCE(object->'status', '{}') || $1::jsonb)
		WHERE kind = 'DataController' AND namespace = $2 AND name = $3`, string(b), dc.Namespace, dc.Name)
	return err
}

// usageMetrics are the usage gauges of this process's controller (one per
// process, like the controller itself); ServeMetrics exposes them.
var usageMetrics = usageexport.NewMetrics()

// ServeMetrics serves the single-host controller's Prometheus metrics (usage
// freshness and direct-mode backlog, plus Go and process metrics) at
// http://ADDR/metrics until ctx ends. It returns the address it listens on,
// which tells the port when addr asks for any (127.0.0.1:0).
func ServeMetrics(ctx context.Context, addr string, log *slog.Logger) (net.Addr, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(usageMetrics.Collectors()...)
	reg.MustRegister(backupMetrics)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-address %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "address", l.Addr().String(), "err", err)
		}
	}()
	return l.Addr(), nil
}

// UsageSite is what an export needs to know about this host's site.
type UsageSite struct {
	Name   string
	Labels map[string]string
	Direct bool
}

// storedSite reads the stored DataController (nil when there is none).
func storedSite(ctx context.Context, db *controldb.DB) (*outpostv1.DataController, UsageSite, error) {
	site := UsageSite{Name: usageexport.DefaultSiteName}
	recs, err := db.Objects(ctx, "DataController")
	if err != nil || len(recs) == 0 {
		return nil, site, err
	}
	var dc outpostv1.DataController
	if err := json.Unmarshal(recs[0].Object, &dc); err != nil {
		return nil, site, fmt.Errorf("stored DataController: %w", err)
	}
	site.Name, site.Labels, site.Direct = dc.Spec.Site.Name, dc.Spec.Site.Labels, controller.UsageSite(&dc).Streams()
	return &dc, site, nil
}

// ExportUsage exports one month of this host's usage. The controller
// (`outpost up`) must be running, since controldb is its.
func ExportUsage(ctx context.Context, sd StateDir, month, version string, gzip bool) (*usageexport.ExportResult, UsageSite, error) {
	var site UsageSite
	if err := sd.mustExist(); err != nil {
		return nil, site, err
	}
	key, err := usageexport.LoadKey(sd.UsageKey())
	if err != nil {
		return nil, site, err
	}
	db, err := controldb.ConnectLocal(ctx, sd.ControlDB())
	if err != nil {
		return nil, site, fmt.Errorf("%w (is `outpost up` running?)", err)
	}
	defer db.Close()
	if err := usageexport.EnsureSchema(ctx, db.Pool); err != nil {
		return nil, site, err
	}
	dc, site, err := storedSite(ctx, db)
	if err != nil {
		return nil, site, err
	}
	res, err := usageexport.ExportSite(ctx, db.Pool, key, controller.UsageSite(dc), month, version, gzip)
	return res, site, err
}

// ShowUsage sums one month of this host's recorded usage per instance. The
// controller (`outpost up`) must be running, since controldb is its.
func ShowUsage(ctx context.Context, sd StateDir, month string) (*usageexport.MonthSummary, UsageSite, error) {
	var site UsageSite
	if _, _, err := usageexport.ParseMonth(month); err != nil {
		return nil, site, fmt.Errorf("--month: %w", err)
	}
	if err := sd.mustExist(); err != nil {
		return nil, site, err
	}
	db, err := controldb.ConnectLocal(ctx, sd.ControlDB())
	if err != nil {
		return nil, site, fmt.Errorf("%w (is `outpost up` running?)", err)
	}
	defer db.Close()
	if err := usageexport.EnsureSchema(ctx, db.Pool); err != nil {
		return nil, site, err
	}
	if _, site, err = storedSite(ctx, db); err != nil {
		return nil, site, err
	}
	s, err := usageexport.SummarizeMonth(ctx, db.Pool, month)
	return s, site, err
}

// RetryRefusedUsage puts the records the hub refused back in the backlog;
// the running controller sends them on its next metering pass. It returns
// how many records that is.
func RetryRefusedUsage(ctx context.Context, sd StateDir) (int64, error) {
	if err := sd.mustExist(); err != nil {
		return 0, err
	}
	db, err := controldb.ConnectLocal(ctx, sd.ControlDB())
	if err != nil {
		return 0, fmt.Errorf("%w (is `outpost up` running?)", err)
	}
	defer db.Close()
	if err := usageexport.EnsureSchema(ctx, db.Pool); err != nil {
		return 0, err
	}
	return usageexport.RetryRefused(ctx, db.Pool)
}
