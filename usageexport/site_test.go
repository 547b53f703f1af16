package usageexport_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/usageexport"
)

// TestSiteMeterPassSamplesAndWorksOutTheSiteUsage drives the metering pass
// both runtimes share: it samples, and what it returns has the key's
// fingerprint and exactly one freshness verdict, that of the site's mode,
// judged against its thresholds. The controller core turns it into the
// DataController's status (see controller/datacontroller_test.go).
func TestSiteMeterPassSamplesAndWorksOutTheSiteUsage(t *testing.T) {
	pg := harness.StartPostgres(t)
	pool, _ := newLedgerDB(t, pg)
	ctx := context.Background()
	clock := harness.NewClock("2026-11-01T00:00:00Z")
	key := newKey(t)
	must(t, usageexport.NewLedger(pool, clock).Observe(ctx, instance(uidA, "a"), shape(2000)))
	m := &usageexport.SiteMeter{Pool: pool, Key: key, Version: "test", Clock: clock}

	// No site: it samples and has nothing to report.
	clock.Set("2026-11-01T03:10:00Z")
	u, err := m.Pass(ctx, nil, usageexport.HubAccess{})
	must(t, err)
	if u != nil {
		t.Errorf("site usage without a site: %+v", u)
	}
	var n int
	must(t, pool.QueryRow(ctx, "SELECT count(*) FROM usage_records").Scan(&n))
	if n != 3 {
		t.Fatalf("%d records after sampling to 03:00, want 3", n)
	}

	site := &usageexport.Site{Name: "plant", WarnAfter: 3 * time.Hour, OverdueAfter: 6 * time.Hour}
	u, err = m.Pass(ctx, site, usageexport.HubAccess{})
	must(t, err)
	if u.Fingerprint != usageexport.Fingerprint(key.Public()) || u.Backlog != 0 || u.LastExport != nil || u.Streaming != nil ||
		!u.SampledUpTo.Equal(time.Date(2026, 11, 1, 3, 0, 0, 0, time.UTC)) || u.SampleErr != nil || u.Clock.Skewed {
		t.Errorf("indirect at 3h10m: %+v", u)
	}
	if f := u.Freshness; f.Type != usageexport.ConditionUsageExported || f.True || f.Reason != usageexport.ReasonStale {
		t.Errorf("indirect at 3h10m: freshness %+v, want UsageExported false/Stale", f)
	}

	// Direct mode without a token: records wait in the backlog (those
	// sampled in indirect mode too), and the upload route is judged.
	site.DirectMode, site.HubURL = true, "http://127.0.0.1:1"
	clock.Set("2026-11-01T07:00:00Z")
	u, err = m.Pass(ctx, site, usageexport.HubAccess{})
	must(t, err)
	if u.Backlog != 7 {
		t.Errorf("backlog %d after three hours indirect and four direct without a token, want 7", u.Backlog)
	}
	if f := u.Freshness; f.Type != usageexport.ConditionUsageUploaded || f.True || f.Reason != usageexport.ReasonOverdue {
		t.Errorf("direct without a token: freshness %+v, want UsageUploaded false/Overdue", f)
	}
	if u.StreamErr != nil || u.Streaming == nil || !u.Streaming.True {
		t.Errorf("direct without a token: nothing was tried, yet streaming %+v, error %v", u.Streaming, u.StreamErr)
	}

	// With a token but the hub unreachable, the pass says why.
	u, err = m.Pass(ctx, site, usageexport.HubAccess{Token: "opt_x"})
	must(t, err)
	if u.StreamErr == nil || u.Streaming == nil || u.Streaming.True || u.Streaming.Reason != usageexport.ReasonHubUnreachable ||
		!strings.Contains(u.Streaming.Message, u.StreamErr.Error()) {
		t.Errorf("direct, hub down: streaming %+v, error %v", u.Streaming, u.StreamErr)
	}
}
