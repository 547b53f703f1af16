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
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/controldb"
	"github.com/outpostdata/outpost/usageexport"
)

// UsageKey is the site's usage signing key, created 0600 on first start.
func (s StateDir) UsageKey() string { return filepath.Join(s.Root, "usage", "signing.key") }

// HubToken holds the site's hub token for direct mode on a single host
// (where a Kubernetes cluster would use the DataController's
// credentialsSecret).
func (s StateDir) HubToken() string { return filepath.Join(s.Root, "usage", "hub-token") }

// defaultSiteName names a site that has no DataController yet.
const defaultSiteName = "default"

// usageRun meters this host: the ledger the reconciler writes to, the
// sampler, the direct-mode streamer and the DataController's usage status.
type usageRun struct {
	db      *controldb.DB
	key     usageexport.SigningKey
	ledger  *usageexport.Ledger
	version string
	log     *slog.Logger
	started time.Time
	site    atomic.Pointer[outpostv1.DataController]
}

func startUsage(ctx context.Context, db *controldb.DB, sd StateDir, version string, log *slog.Logger) (*usageRun, error) {
	if err := usageexport.EnsureSchema(ctx, db.Pool); err != nil {
		return nil, err
	}
	key, err := usageexport.LoadOrCreateKey(sd.UsageKey())
	if err != nil {
		return nil, err
	}
	return &usageRun{db: db, key: key, ledger: usageexport.NewLedger(db.Pool, nil), version: version,
		log: log.With("component", "usage"), started: time.Now()}, nil
}

// setSite takes the DataController (nil when there is none) from each pass.
func (u *usageRun) setSite(dc *outpostv1.DataController) { u.site.Store(dc) }

// run samples, streams (direct mode) and updates status every metering
// interval until ctx ends.
func (u *usageRun) run(ctx context.Context, sd StateDir) {
	siteID := usageexport.SiteID(u.key.Public())
	for {
		dc := u.site.Load()
		interval, direct := time.Minute, false
		if dc != nil {
			if d := dc.Spec.Metering.Interval.Duration; d > 0 {
				interval = d
			}
			direct = dc.Spec.Connectivity.Mode == outpostv1.ConnectivityDirect && dc.Spec.Connectivity.Hub != nil
		}
		sampler := &usageexport.Sampler{Pool: u.db.Pool, Clock: usageexport.SystemClock{}, SiteID: siteID, Outbox: direct, Log: u.log}
		if _, err := sampler.Sample(ctx); err != nil && ctx.Err() == nil {
			u.log.Error("usage sampling failed; the next sample catches up", "err", err)
		}
		if direct {
			u.stream(ctx, sd, dc)
		}
		if err := u.writeStatus(ctx, dc); err != nil && ctx.Err() == nil {
			u.log.Warn("cannot update DataController usage status", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

func (u *usageRun) stream(ctx context.Context, sd StateDir, dc *outpostv1.DataController) {
	token, err := os.ReadFile(sd.HubToken())
	if err != nil {
		u.log.Warn("direct mode without a hub token: usage waits in the outbox", "file", sd.HubToken(), "err", err)
		return
	}
	s := &usageexport.Streamer{Pool: u.db.Pool, Key: u.key, SiteName: dc.Spec.Site.Name, SiteLabels: dc.Spec.Site.Labels,
		ControllerVersion: u.version, Log: u.log,
		// One attempt per tick: the tick is the retry, and it never
		// holds up sampling.
		Hub: usageexport.UploadOptions{HubURL: dc.Spec.Connectivity.Hub.URL, Token: strings.TrimSpace(string(token)), Attempts: 1}}
	if _, err := s.Flush(ctx); err != nil && ctx.Err() == nil {
		u.log.Warn("usage not streamed to the hub; it waits in the outbox", "hub", dc.Spec.Connectivity.Hub.URL, "err", err)
	}
}

// writeStatus puts the signing key fingerprint, last export and upload,
// backlog and freshness conditions into the stored DataController.
func (u *usageRun) writeStatus(ctx context.Context, dc *outpostv1.DataController) error {
	if dc == nil {
		return nil
	}
	pool := u.db.Pool
	st := outpostv1.DataControllerStatus{SigningKeyFingerprint: usageexport.Fingerprint(u.key.Public())}
	var err error
	if st.Backlog, err = usageexport.Backlog(ctx, pool); err != nil {
		return err
	}
	lastExport, okE, err := usageexport.State(ctx, pool, usageexport.StateLastExport)
	if err != nil {
		return err
	}
	lastUpload, okU, err := usageexport.State(ctx, pool, usageexport.StateLastUpload)
	if err != nil {
		return err
	}
	if okE {
		st.LastExportTime = &metav1.Time{Time: lastExport}
	}
	if okU {
		st.LastUploadTime = &metav1.Time{Time: lastUpload}
	}
	var since time.Time
	if err := pool.QueryRow(ctx, `SELECT COALESCE(min(created_at), now()) FROM usage_instances`).Scan(&since); err != nil {
		return err
	}
	warn, overdue := dc.Spec.Metering.WarnAfter.Duration, dc.Spec.Metering.OverdueAfter.Duration
	condType, last := usageexport.ConditionUsageExported, st.LastExportTime
	if dc.Spec.Connectivity.Mode == outpostv1.ConnectivityDirect {
		condType, last = usageexport.ConditionUsageUploaded, st.LastUploadTime
	}
	var lastT *time.Time
	if last != nil {
		lastT = &last.Time
	}
	now := time.Now()
	c := usageexport.FreshnessCondition(condType, lastT, since, now, warn, overdue)
	usageMetrics.Observe(condType, lastT, since, now, warn, overdue, c.Reason, st.Backlog)
	c.ObservedGeneration = dc.Generation
	meta.SetStatusCondition(&st.Conditions, c)
	st.ObservedGeneration = dc.Generation
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	// Only the usage fields: other status fields, if any, are kept.
	_, err = pool.Exec(ctx, `UPDATE objects SET object = jsonb_set(object, '{status}', COALESCE(object->'status', '{}') || $1::jsonb)
		WHERE kind = 'DataController'`, string(b))
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

// storedSite reads the site from the stored DataController.
func storedSite(ctx context.Context, db *controldb.DB) (UsageSite, error) {
	site := UsageSite{Name: defaultSiteName}
	recs, err := db.Objects(ctx, "DataController")
	if err != nil || len(recs) == 0 {
		return site, err
	}
	var dc outpostv1.DataController
	if err := json.Unmarshal(recs[0].Object, &dc); err != nil {
		return site, fmt.Errorf("stored DataController: %w", err)
	}
	site.Name, site.Labels = dc.Spec.Site.Name, dc.Spec.Site.Labels
	site.Direct = dc.Spec.Connectivity.Mode == outpostv1.ConnectivityDirect
	return site, nil
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
	if site, err = storedSite(ctx, db); err != nil {
		return nil, site, err
	}
	sampler := &usageexport.Sampler{Pool: db.Pool, Clock: usageexport.SystemClock{}, SiteID: usageexport.SiteID(key.Public()), Outbox: site.Direct}
	res, err := usageexport.Export(ctx, db.Pool, usageexport.ExportOptions{
		Month: month, SiteName: site.Name, SiteLabels: site.Labels, ControllerVersion: version,
		Key: key, Sampler: sampler, Gzip: gzip,
	})
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
	if site, err = storedSite(ctx, db); err != nil {
		return nil, site, err
	}
	s, err := usageexport.SummarizeMonth(ctx, db.Pool, month)
	return s, site, err
}
