package usageexport

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

// Reasons of the DataController's Ready condition, which says whether the
// site is metering.
const (
	ReasonMetering       = "Metering"
	ReasonSamplingFailed = "SamplingFailed"
	ReasonNoHubToken     = "NoHubToken"
	// ReasonOrphanSweepFailed: the declared instances could not be listed
	// (RBAC, say), so deleted instances cannot be closed.
	ReasonOrphanSweepFailed = "OrphanSweepFailed"
)

// DefaultInterval is the sampling interval when the DataController does
// not set one (or there is none yet).
const DefaultInterval = time.Minute

// SiteMeter is one site's metering loop body, the same whatever the
// controller runs on: each Pass samples the ledger, streams the backlog in
// direct mode, and works out the DataController's usage status. The single
// host stores that status in controldb and Kubernetes in the status
// subresource; nothing else differs.
type SiteMeter struct {
	Pool *pgxpool.Pool
	Key  SigningKey
	// Version is the controller's, written into streamed batches.
	Version string
	// Clock is the wall clock when nil.
	Clock Clock
	// Metrics, when set, are updated with every status worked out.
	Metrics *Metrics
	Log     *slog.Logger
	// Source, when set, lists the instances the site declares now, for
	// the orphan sweep.
	Source func(context.Context) ([]Declared, error)
	// TrustControlDBClock says controldb runs on another host, so its
	// now() is a check on this host's clock.
	TrustControlDBClock bool
	// Skew is how far the clock may be from a trusted one; 0 means
	// DefaultClockSkew.
	Skew time.Duration

	// hubWithoutTime: the hub acknowledged without its time (a hub older
	// than serverTime), so asking it again is no use.
	hubWithoutTime atomic.Bool
	// trusted is the newest trusted time of this process (clockcheck.go);
	// keep one SiteMeter for the life of the controller.
	trusted trustedClock
}

// needHubTime says whether to ask the hub its time with an empty batch:
// only when an hour has closed since the newest trusted time, so that
// sampling it is not held back (at most about once an hour).
func (m *SiteMeter) needHubTime(ctx context.Context, now time.Time) bool {
	if m.hubWithoutTime.Load() {
		return false
	}
	trusted, ok, err := State(ctx, m.Pool, StateTrustedTime)
	return err == nil && (!ok || trusted.Before(second(now).Truncate(time.Hour)))
}

// Interval is how long to wait between passes for dc (nil: no
// DataController yet).
func Interval(dc *outpostv1.DataController) time.Duration {
	if dc != nil && dc.Spec.Metering.Interval.Duration > 0 {
		return dc.Spec.Metering.Interval.Duration
	}
	return DefaultInterval
}

// Direct says whether dc streams usage to a hub.
func Direct(dc *outpostv1.DataController) bool {
	return dc != nil && dc.Spec.Connectivity.Mode == outpostv1.ConnectivityDirect && dc.Spec.Connectivity.Hub != nil
}

// HubAccess is how a direct-mode site reaches its hub: the site's token
// and, when the hub's certificate needs its own CA, a client that trusts it
// (nil: the system roots).
type HubAccess struct {
	Token  string
	Client *http.Client
}

// Pass is one metering pass:
//
//  1. the orphan sweep, when the meter has a Source: instances the source
//     no longer declares are closed (see Ledger.Sweep);
//  2. in direct mode with a token, the hub's backlog is sent, which also
//     tells the hub's time (an empty batch asks for it when there is
//     nothing to send);
//  3. the clock check (checkClock) against the hub's time and, when
//     trusted, controldb's; a skewed clock bills nothing this pass;
//  4. every closed hour up to the newest trusted time plus the skew is
//     sampled, and in direct mode the new records are sent.
//
// It returns dc's usage status: the key's fingerprint, last export and
// upload, backlog, Ready (metering), the freshness condition of dc's mode,
// UsageStreaming (direct mode, or refused batches waiting) and ClockSkew.
// With no DataController it does the same work and returns nil.
func (m *SiteMeter) Pass(ctx context.Context, dc *outpostv1.DataController, hub HubAccess) (*outpostv1.DataControllerStatus, error) {
	clock := m.Clock
	if clock == nil {
		clock = SystemClock{}
	}
	log := m.Log
	if log == nil {
		log = slog.Default()
	}
	// A sweep that cannot run bills deleted instances on: it shows in Ready.
	var sweepErr error
	if m.Source != nil {
		listedAt := clock.Now()
		if declared, err := m.Source(ctx); err != nil {
			sweepErr = fmt.Errorf("orphan sweep: cannot list the declared instances: %w", err)
			log.Warn("orphan sweep skipped: cannot list the declared instances", "err", err)
		} else if closed, err := NewLedger(m.Pool, clock).Sweep(ctx, listedAt, declared); err != nil {
			sweepErr = fmt.Errorf("orphan sweep: %w", err)
			log.Error("orphan sweep failed; the next pass tries again", "err", err)
		} else if len(closed) > 0 {
			log.Info("usage of instances no longer declared closed at their deletion or last sighting", "uids", closed)
		}
	}

	direct := Direct(dc)
	var streamer *Streamer
	var streamErr error
	if direct && hub.Token != "" {
		streamer = &Streamer{Pool: m.Pool, Key: m.Key, Clock: clock, SiteName: dc.Spec.Site.Name, SiteLabels: dc.Spec.Site.Labels,
			ControllerVersion: m.Version, Log: log,
			// One attempt per pass: the next pass is the retry, and a
			// hub that is down never holds up the status.
			Hub: UploadOptions{HubURL: dc.Spec.Connectivity.Hub.URL, Token: hub.Token, Attempts: 1, Client: hub.Client}}
		var sent int
		sent, streamErr = streamer.Flush(ctx)
		if streamErr == nil && sent == 0 && m.needHubTime(ctx, clock.Now()) {
			// Only for the hub's time: a refusal here is no batch's.
			if err := streamer.Heartbeat(ctx); err != nil {
				log.Debug("no hub time this pass", "err", err)
			} else if _, _, ok := streamer.HubTime(); !ok {
				m.hubWithoutTime.Store(true)
			}
		}
	}

	var readings []Reading
	if streamer != nil {
		if t, local, ok := streamer.HubTime(); ok {
			readings = append(readings, Reading{Source: "the hub " + dc.Spec.Connectivity.Hub.URL, Trusted: t, Local: local})
		}
	}
	if m.TrustControlDBClock {
		var t time.Time
		if err := m.Pool.QueryRow(ctx, `SELECT now()`).Scan(&t); err != nil {
			return nil, fmt.Errorf("usage clock check: controldb's time: %w", err)
		}
		readings = append(readings, Reading{Source: "controldb", Trusted: t, Local: clock.Now()})
	}
	verdict, err := m.checkClock(ctx, clock.Now(), readings)
	if err != nil {
		return nil, err
	}
	var sampleErr error
	if verdict.Skewed {
		log.Warn("usage not sampled: the clock cannot be trusted", "reason", verdict.Condition.Reason, "detail", verdict.Condition.Message)
	} else {
		sampler := &Sampler{Pool: m.Pool, Clock: clock, SiteID: SiteID(m.Key.Public()), NotAfter: verdict.NotAfter, Log: log}
		var n int
		n, sampleErr = sampler.Sample(ctx)
		if sampleErr != nil && ctx.Err() == nil {
			log.Error("usage sampling failed; the next sample catches up", "err", sampleErr)
		}
		if n > 0 && streamer != nil {
			_, streamErr = streamer.Flush(ctx)
		}
	}
	if streamErr != nil && ctx.Err() == nil {
		log.Warn("usage not streamed to the hub; it waits in the backlog", "hub", dc.Spec.Connectivity.Hub.URL, "err", streamErr)
	}
	if dc == nil {
		return nil, nil
	}
	st, err := m.status(ctx, dc, clock.Now())
	if err != nil {
		return nil, err
	}
	ready := metav1.Condition{Type: outpostv1.ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonMetering,
		Message: fmt.Sprintf("usage sampled up to %s", second(clock.Now()).Truncate(time.Hour).Format(time.RFC3339))}
	switch {
	case verdict.Skewed:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, ConditionClockSkew, verdict.Condition.Message
	case sampleErr != nil:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, ReasonSamplingFailed, sampleErr.Error()
	case sweepErr != nil:
		ready.Status, ready.Reason = metav1.ConditionFalse, ReasonOrphanSweepFailed
		ready.Message = sweepErr.Error() + "; instances deleted without the controller seeing it stay billed until it runs"
	case direct && hub.Token == "":
		ready.Status, ready.Reason = metav1.ConditionFalse, ReasonNoHubToken
		ready.Message = "direct mode has no hub token (connectivity.hub.credentialsSecret, key \"token\"): usage waits in the backlog"
	}
	ready.ObservedGeneration = dc.Generation
	meta.SetStatusCondition(&st.Conditions, ready)
	verdict.Condition.ObservedGeneration = dc.Generation
	meta.SetStatusCondition(&st.Conditions, verdict.Condition)
	streaming, err := StreamingCondition(ctx, m.Pool, direct, streamErr)
	if err != nil {
		return nil, err
	}
	if streaming == nil {
		meta.RemoveStatusCondition(&st.Conditions, ConditionUsageStreaming)
	} else {
		streaming.ObservedGeneration = dc.Generation
		meta.SetStatusCondition(&st.Conditions, *streaming)
	}
	if streamErr != nil {
		// The freshness verdict stands; the reason it is not getting
		// fresher is worth a line.
		for i := range st.Conditions {
			if st.Conditions[i].Type == ConditionUsageUploaded {
				st.Conditions[i].Message += "; the last attempt failed: " + streamErr.Error()
			}
		}
	}
	return st, nil
}

// status works out dc's usage status as of now. The conditions start from
// dc's, so conditions other writers own are kept.
func (m *SiteMeter) status(ctx context.Context, dc *outpostv1.DataController, now time.Time) (*outpostv1.DataControllerStatus, error) {
	st := &outpostv1.DataControllerStatus{
		ObservedGeneration:    dc.Generation,
		SigningKeyFingerprint: Fingerprint(m.Key.Public()),
	}
	for _, c := range dc.Status.Conditions {
		st.Conditions = append(st.Conditions, *c.DeepCopy())
	}
	var err error
	if Direct(dc) {
		// In indirect mode every record is unacknowledged until the site
		// switches to direct; that is not a backlog anyone waits on.
		if st.Backlog, err = Backlog(ctx, m.Pool); err != nil {
			return nil, err
		}
	}
	lastExport, okE, err := State(ctx, m.Pool, StateLastExport)
	if err != nil {
		return nil, err
	}
	lastUpload, okU, err := State(ctx, m.Pool, StateLastUpload)
	if err != nil {
		return nil, err
	}
	if okE {
		st.LastExportTime = &metav1.Time{Time: lastExport}
	}
	if okU {
		st.LastUploadTime = &metav1.Time{Time: lastUpload}
	}
	var since time.Time
	if err := m.Pool.QueryRow(ctx, `SELECT COALESCE(min(created_at), $1) FROM usage_instances`, now).Scan(&since); err != nil {
		return nil, fmt.Errorf("usage status: %w", err)
	}
	condType, other, last := ConditionUsageExported, ConditionUsageUploaded, st.LastExportTime
	if dc.Spec.Connectivity.Mode == outpostv1.ConnectivityDirect {
		condType, other, last = ConditionUsageUploaded, ConditionUsageExported, st.LastUploadTime
	}
	var lastT *time.Time
	if last != nil {
		lastT = &last.Time
	}
	warn, overdue := dc.Spec.Metering.WarnAfter.Duration, dc.Spec.Metering.OverdueAfter.Duration
	c := FreshnessCondition(condType, lastT, since, now, warn, overdue)
	if m.Metrics != nil {
		m.Metrics.Observe(condType, lastT, since, now, warn, overdue, c.Reason, st.Backlog)
	}
	c.ObservedGeneration = dc.Generation
	// A site that switched mode is judged by its new route only.
	meta.RemoveStatusCondition(&st.Conditions, other)
	meta.SetStatusCondition(&st.Conditions, c)
	return st, nil
}

// DefaultSiteName names a site that has no DataController yet.
const DefaultSiteName = "default"

// ExportSite catches the ledger up and exports one month of the site dc
// describes (nil: a site with no DataController, named DefaultSiteName):
// what `outpost usage export` does whatever the controller runs on.
func ExportSite(ctx context.Context, pool *pgxpool.Pool, key SigningKey, dc *outpostv1.DataController, month, version string, gzip bool) (*ExportResult, error) {
	name, labels := DefaultSiteName, map[string]string(nil)
	if dc != nil {
		name, labels = dc.Spec.Site.Name, dc.Spec.Site.Labels
	}
	sampler := &Sampler{Pool: pool, Clock: SystemClock{}, SiteID: SiteID(key.Public())}
	return Export(ctx, pool, ExportOptions{
		Month: month, SiteName: name, SiteLabels: labels, ControllerVersion: version,
		Key: key, Sampler: sampler, Gzip: gzip,
	})
}
