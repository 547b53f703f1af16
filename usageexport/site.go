package usageexport

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultInterval is the sampling interval when the DataController does
// not set one (or there is none yet).
const DefaultInterval = time.Minute

// SiteMeter is one site's metering loop body, the same whatever the
// controller runs on: each Pass samples the ledger, streams the backlog in
// direct mode, and works out the site's usage, which the controller core
// turns into the DataController's status.
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

// Site is what a metering pass needs to know of the site's DataController.
// The controller core translates the DataController into it; nil means
// the site has no DataController yet.
type Site struct {
	// Name and Labels identify the site in streamed batches and exports.
	Name   string
	Labels map[string]string
	// DirectMode: usage leaves the site by reaching the hub, so freshness
	// is judged by uploads rather than exports.
	DirectMode bool
	// HubURL is where direct mode streams usage; empty when the site has no
	// hub, and then nothing is streamed and nothing counts as a backlog.
	HubURL string
	// WarnAfter and OverdueAfter are the freshness thresholds; zero means
	// DefaultWarnAfter and DefaultOverdueAfter.
	WarnAfter, OverdueAfter time.Duration
}

// Streams says whether the site streams usage to a hub.
func (s *Site) Streams() bool { return s != nil && s.DirectMode && s.HubURL != "" }

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
// It returns what the pass saw of the site's usage (see SiteUsage), which
// the controller core turns into the DataController's status. With no site
// (no DataController) it does the same work and returns nil.
func (m *SiteMeter) Pass(ctx context.Context, site *Site, hub HubAccess) (*SiteUsage, error) {
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

	direct := site.Streams()
	var streamer *Streamer
	var streamErr error
	if direct && hub.Token != "" {
		streamer = &Streamer{Pool: m.Pool, Key: m.Key, Clock: clock, SiteName: site.Name, SiteLabels: site.Labels,
			ControllerVersion: m.Version, Log: log,
			// One attempt per pass: the next pass is the retry, and a
			// hub that is down never holds up the status.
			Hub: UploadOptions{HubURL: site.HubURL, Token: hub.Token, Attempts: 1, Client: hub.Client}}
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
			readings = append(readings, Reading{Source: "the hub " + site.HubURL, Trusted: t, Local: local})
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
		log.Warn("usage not sampled: the clock cannot be trusted", "reason", verdict.Reason, "detail", verdict.Message)
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
		log.Warn("usage not streamed to the hub; it waits in the backlog", "hub", site.HubURL, "err", streamErr)
	}
	if site == nil {
		return nil, nil
	}
	u, err := m.usage(ctx, site, clock.Now())
	if err != nil {
		return nil, err
	}
	u.Clock = verdict
	u.SweepErr, u.SampleErr, u.StreamErr = sweepErr, sampleErr, streamErr
	if u.Streaming, err = Streaming(ctx, m.Pool, direct, streamErr); err != nil {
		return nil, err
	}
	return u, nil
}

// SiteUsage is what one metering pass saw of the site's usage: plain
// values, which the controller core turns into the DataController's
// status and conditions.
type SiteUsage struct {
	// Fingerprint is the signing key's.
	Fingerprint string
	// SampledUpTo is the hour a successful sampling reached: the pass's
	// time, truncated to the hour.
	SampledUpTo time.Time
	// LastExport and LastUpload are when usage last left the site by an
	// export file and by reaching the hub; nil when it never did.
	LastExport, LastUpload *time.Time
	// Backlog is the records the hub has not acknowledged (only while the
	// site streams: in indirect mode nobody waits on them).
	Backlog int64
	// Freshness judges how long ago usage left the site by the route of
	// the site's mode (ConditionUsageExported or ConditionUsageUploaded).
	Freshness Verdict
	// Clock is the clock check's verdict.
	Clock ClockVerdict
	// Streaming is ConditionUsageStreaming's verdict; nil when there is
	// nothing to say (indirect mode and nothing set aside).
	Streaming *Verdict
	// SweepErr, SampleErr and StreamErr are why the orphan sweep,
	// sampling or streaming failed this pass; the next pass tries again.
	SweepErr, SampleErr, StreamErr error
}

// Verdict is one judgement of a pass, under the name of the condition that
// shows it (Type): whether that condition holds (True), why, in a word
// (Reason), and in a sentence (Message).
type Verdict struct {
	Type, Reason, Message string
	True                  bool
}

// usage works out the site's usage as of now.
func (m *SiteMeter) usage(ctx context.Context, site *Site, now time.Time) (*SiteUsage, error) {
	u := &SiteUsage{Fingerprint: Fingerprint(m.Key.Public()), SampledUpTo: second(now).Truncate(time.Hour)}
	var err error
	if site.Streams() {
		// In indirect mode every record is unacknowledged until the site
		// switches to direct; that is not a backlog anyone waits on.
		if u.Backlog, err = Backlog(ctx, m.Pool); err != nil {
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
		u.LastExport = &lastExport
	}
	if okU {
		u.LastUpload = &lastUpload
	}
	var since time.Time
	if err := m.Pool.QueryRow(ctx, `SELECT COALESCE(min(created_at), $1) FROM usage_instances`, now).Scan(&since); err != nil {
		return nil, fmt.Errorf("usage status: %w", err)
	}
	condType, last := ConditionUsageExported, u.LastExport
	if site.DirectMode {
		condType, last = ConditionUsageUploaded, u.LastUpload
	}
	u.Freshness = Freshness(condType, last, since, now, site.WarnAfter, site.OverdueAfter)
	if m.Metrics != nil {
		m.Metrics.Observe(condType, last, since, now, site.WarnAfter, site.OverdueAfter, u.Freshness.Reason, u.Backlog)
	}
	return u, nil
}

// DefaultSiteName names a site that has no DataController yet.
const DefaultSiteName = "default"

// ExportSite catches the ledger up and exports one month of site (nil: a
// site with no DataController, named DefaultSiteName): what `outpost usage
// export` does whatever the controller runs on.
func ExportSite(ctx context.Context, pool *pgxpool.Pool, key SigningKey, site *Site, month, version string, gzip bool) (*ExportResult, error) {
	name, labels := DefaultSiteName, map[string]string(nil)
	if site != nil {
		name, labels = site.Name, site.Labels
	}
	sampler := &Sampler{Pool: pool, Clock: SystemClock{}, SiteID: SiteID(key.Public())}
	return Export(ctx, pool, ExportOptions{
		Month: month, SiteName: name, SiteLabels: labels, ControllerVersion: version,
		Key: key, Sampler: sampler, Gzip: gzip,
	})
}
