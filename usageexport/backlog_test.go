package usageexport_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/usageexport"
	"github.com/outpostdata/outpost/usageexport/hub"
)

// testHub is a real hub on a real PostgreSQL, serving on 127.0.0.1, with
// its clock the test's.
type testHub struct {
	*hub.Hub
	pool *pgxpool.Pool
	url  string
}

func startHub(t *testing.T, pg *harness.Postgres, clock *harness.Clock) *testHub {
	t.Helper()
	ctx := context.Background()
	_, url := newLedgerDB(t, pg) // a fresh database; the hub adds its own tables
	pool, err := hub.Open(ctx, url)
	must(t, err)
	t.Cleanup(pool.Close)
	h := &hub.Hub{Pool: pool, Log: slog.New(slog.DiscardHandler), Now: clock.Now}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	srv := &http.Server{Handler: h.Handler()}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return &testHub{Hub: h, pool: pool, url: "http://" + l.Addr().String()}
}

// total is what the hub holds of site in month.
func (h *testHub) total(t *testing.T, site, month string) usageexport.Total {
	t.Helper()
	u, err := h.Usage(context.Background(), site, month)
	must(t, err)
	return u.Total
}

// ledgerTotal is what the site's ledger holds.
func ledgerTotal(t *testing.T, pool *pgxpool.Pool) (n, mvcs int64) {
	t.Helper()
	must(t, pool.QueryRow(context.Background(), "SELECT count(*), COALESCE(sum(milli_vcore_seconds), 0) FROM usage_records").Scan(&n, &mvcs))
	return n, mvcs
}

// plant is the site "plant", streaming to hubURL when one is given
// (direct mode) and exporting otherwise.
func plant(hubURL string) *usageexport.Site {
	return &usageexport.Site{Name: "plant", DirectMode: hubURL != "", HubURL: hubURL}
}

// TestSwitchingToDirectSendsThePastExactlyOnce: a site runs indirect for
// three days (a fake clock), exports the month so far, then switches to
// direct mode. The hub ends up with every record the ledger holds, each
// once, whether or not the export was uploaded too; the backlog drains to
// nothing and acknowledged records leave it.
func TestSwitchingToDirectSendsThePastExactlyOnce(t *testing.T) {
	pg := harness.StartPostgres(t)
	for _, uploaded := range []bool{false, true} {
		t.Run(fmt.Sprintf("export uploaded %v", uploaded), func(t *testing.T) {
			ctx := context.Background()
			pool, _ := newLedgerDB(t, pg)
			clock := harness.NewClock("2026-11-01T00:00:00Z")
			key := newKey(t)
			h := startHub(t, pg, clock)
			token, err := h.AddSite(ctx, "plant", usageexport.FormatPublicKey(key.Public()))
			must(t, err)
			ledger := usageexport.NewLedger(pool, clock)
			must(t, ledger.Observe(ctx, instance(uidA, "a"), shape(2000)))
			clock.Set("2026-11-01T10:20:00Z")
			must(t, ledger.Observe(ctx, instance(uidB, "b"), shape(500)))
			m := &usageexport.SiteMeter{Pool: pool, Key: key, Version: "test", Clock: clock}

			// Three days indirect, a pass now and then.
			for _, at := range []string{"2026-11-02T00:00:00Z", "2026-11-03T12:30:00Z", "2026-11-04T00:05:00Z"} {
				clock.Set(at)
				_, err := m.Pass(ctx, plant(""), usageexport.HubAccess{})
				must(t, err)
			}
			res, err := usageexport.Export(ctx, pool, usageexport.ExportOptions{Month: "2026-11", SiteName: "plant", Key: key, Clock: clock, ControllerVersion: "test"})
			must(t, err)
			if uploaded {
				rc, err := usageexport.Upload(ctx, res.File, usageexport.UploadOptions{HubURL: h.url, Token: token, Attempts: 1})
				must(t, err)
				if rc.NewRecords == 0 {
					t.Fatalf("the export brought the hub nothing: %+v", rc)
				}
			}

			// Direct mode: the past goes too.
			clock.Set("2026-11-04T02:00:00Z")
			st, err := m.Pass(ctx, plant(h.url), usageexport.HubAccess{Token: token})
			must(t, err)
			n, mvcs := ledgerTotal(t, pool)
			// a: 74 hours at 2 cores; b: 10:20 on the 1st to 02:00 on the 4th at 0.5.
			if want := int64(74*2000*3600 + (63*3600+40*60)*500); mvcs != want {
				t.Fatalf("ledger holds %d milli-vCore-seconds, want %d", mvcs, want)
			}
			got := h.total(t, "plant", "2026-11")
			if got.Records != n || got.MilliVCoreSeconds != mvcs {
				t.Errorf("hub holds %d records, %d milli-vCore-seconds; the ledger %d, %d: not every record exactly once",
					got.Records, got.MilliVCoreSeconds, n, mvcs)
			}
			if st.Backlog != 0 {
				t.Errorf("backlog %d after the hub acknowledged everything", st.Backlog)
			}
			var unacked int
			must(t, pool.QueryRow(ctx, "SELECT count(*) FROM usage_records WHERE acked_at IS NULL").Scan(&unacked))
			if unacked != 0 {
				t.Errorf("%d records still in the queue after the hub acknowledged them", unacked)
			}
			if c := st.Streaming; c == nil || !c.True {
				t.Errorf("UsageStreaming after a clean flush: %+v", c)
			}
		})
	}
}

// TestRefusedBatchIsSetAsideAndRetriedAfterTheFix: the hub holds another
// key for the site (as after the signing-key Secret was re-created), so it
// refuses the site's batches. They are set aside with UsageStreaming naming
// the hub's reason; once the key is fixed, later batches flow past them,
// and RetryRefused (`outpost usage retry`) delivers them: the hub ends up
// with every record once.
func TestRefusedBatchIsSetAsideAndRetriedAfterTheFix(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	pool, _ := newLedgerDB(t, pg)
	clock := harness.NewClock("2026-11-01T00:00:00Z")
	key, other := newKey(t), newKey(t)
	h := startHub(t, pg, clock)
	token, err := h.AddSite(ctx, "plant", usageexport.FormatPublicKey(other.Public()))
	must(t, err)
	must(t, usageexport.NewLedger(pool, clock).Observe(ctx, instance(uidA, "a"), shape(1000)))
	m := &usageexport.SiteMeter{Pool: pool, Key: key, Version: "test", Clock: clock}
	site := plant(h.url)
	pass := func(at string) *usageexport.SiteUsage {
		t.Helper()
		clock.Set(at)
		st, err := m.Pass(ctx, site, usageexport.HubAccess{Token: token})
		must(t, err)
		return st
	}

	st := pass("2026-11-01T05:00:00Z")
	c := st.Streaming
	if c == nil || c.True || c.Reason != usageexport.ReasonBatchRefused ||
		!strings.Contains(c.Message, "expected key") || !strings.Contains(c.Message, "outpost usage retry") {
		t.Fatalf("UsageStreaming after the hub refused a batch: %+v", c)
	}
	if got := h.total(t, "plant", "2026-11"); got.Records != 0 {
		t.Fatalf("the hub stored %d records of a batch it refused", got.Records)
	}
	if st.Backlog != 5 {
		t.Errorf("backlog %d with 5 records set aside, want 5", st.Backlog)
	}

	// The key is fixed at the hub; the next hours flow past the set-aside
	// batch.
	_, err = h.pool.Exec(ctx, "UPDATE hub_sites SET public_key = $1, site_id = $2 WHERE name = 'plant'",
		usageexport.FormatPublicKey(key.Public()), usageexport.SiteID(key.Public()))
	must(t, err)
	st = pass("2026-11-01T08:00:00Z")
	if got := h.total(t, "plant", "2026-11"); got.Records != 3 || got.MilliVCoreSeconds != 3*1000*3600 {
		t.Errorf("after the fix the hub has %+v, want the 3 later hours", got)
	}
	if c := st.Streaming; c == nil || c.Reason != usageexport.ReasonBatchRefused {
		t.Errorf("UsageStreaming while records are still set aside: %+v", c)
	}

	n, err := usageexport.RetryRefused(ctx, pool)
	must(t, err)
	if n != 5 {
		t.Errorf("retry queued %d records, want 5", n)
	}
	st = pass("2026-11-01T08:10:00Z")
	if got := h.total(t, "plant", "2026-11"); got.Records != 8 || got.MilliVCoreSeconds != 8*1000*3600 {
		t.Errorf("after retry the hub has %+v, want all 8 hours once", got)
	}
	if c := st.Streaming; c == nil || !c.True || st.Backlog != 0 {
		t.Errorf("after retry: UsageStreaming %+v, backlog %d", c, st.Backlog)
	}
}

// TestOrphanSweepClosesWhatTheSourceNoLongerDeclares: an instance the
// source stops listing without the ledger being told (a finalizer removed
// by hand, a deletion while the controller was down) is closed at the last
// time a listing held it, or at its deletion request when one was listed;
// one observed after the listing began is left alone.
func TestOrphanSweepClosesWhatTheSourceNoLongerDeclares(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	pool, _ := newLedgerDB(t, pg)
	clock := harness.NewClock("2026-11-01T00:00:00Z")
	ledger := usageexport.NewLedger(pool, clock)
	const uidC = "0b7a1d1e-0000-4000-8000-00000000000c"
	must(t, ledger.Observe(ctx, instance(uidA, "a"), shape(1000)))
	must(t, ledger.Observe(ctx, instance(uidB, "b"), shape(1000)))

	requested := time.Date(2026, 11, 1, 2, 30, 0, 0, time.UTC)
	clock.Set("2026-11-01T02:45:00Z")
	_, err := ledger.Sweep(ctx, clock.Now(), []usageexport.Declared{{UID: uidA}, {UID: uidB, DeletionRequested: &requested}})
	must(t, err)

	// 05:00: neither is listed any more; c appears after the listing began.
	clock.Set("2026-11-01T05:00:00Z")
	listedAt := clock.Now()
	clock.Set("2026-11-01T05:00:02Z")
	must(t, ledger.Observe(ctx, instance(uidC, "c"), shape(1000)))
	closed, err := ledger.Sweep(ctx, listedAt, nil)
	must(t, err)
	if strings.Join(closed, ",") != uidA+","+uidB {
		t.Errorf("sweep closed %v, want a and b", closed)
	}
	ends := map[string]time.Time{}
	rows, err := pool.Query(ctx, "SELECT uid, end_at FROM usage_intervals WHERE end_at IS NOT NULL")
	must(t, err)
	for rows.Next() {
		var uid string
		var end time.Time
		must(t, rows.Scan(&uid, &end))
		ends[uid] = end.UTC()
	}
	must(t, rows.Err())
	if want := time.Date(2026, 11, 1, 2, 45, 0, 0, time.UTC); !ends[uidA].Equal(want) {
		t.Errorf("a closed at %v, want %v (last seen)", ends[uidA], want)
	}
	if !ends[uidB].Equal(requested) {
		t.Errorf("b closed at %v, want %v (its deletion request)", ends[uidB], requested)
	}
	if _, ok := ends[uidC]; ok {
		t.Errorf("c, observed after the listing began, was closed")
	}
	// Closed once: another sweep changes nothing.
	closed, err = ledger.Sweep(ctx, clock.Now(), []usageexport.Declared{{UID: uidC}})
	must(t, err)
	if len(closed) != 0 {
		t.Errorf("second sweep closed %v", closed)
	}
}

// TestClockSetAheadBillsNoFutureHour: controldb is on another host, so its
// clock is trusted. A site clock three days ahead raises ClockSkew and
// bills nothing; corrected, metering resumes and no record ends after the
// trusted time plus the skew. The control: the same clock without a
// trusted reading does bill the future.
func TestClockSetAheadBillsNoFutureHour(t *testing.T) {
	pg := harness.StartPostgres(t)
	for _, trusted := range []bool{true, false} {
		t.Run(fmt.Sprintf("trusted controldb %v", trusted), func(t *testing.T) {
			ctx := context.Background()
			pool, _ := newLedgerDB(t, pg)
			real := time.Now().UTC()
			clock := harness.NewClock(real.Add(-5 * time.Hour).Format(time.RFC3339))
			key := newKey(t)
			must(t, usageexport.NewLedger(pool, clock).Observe(ctx, instance(uidA, "a"), shape(1000)))
			m := &usageexport.SiteMeter{Pool: pool, Key: key, Version: "test", Clock: clock, TrustControlDBClock: trusted}
			site := plant("")

			clock.Set(real.Add(72 * time.Hour).Format(time.RFC3339))
			st, err := m.Pass(ctx, site, usageexport.HubAccess{})
			must(t, err)
			var latest *time.Time
			must(t, pool.QueryRow(ctx, "SELECT max(end_at) FROM usage_records").Scan(&latest))
			limit := time.Now().Add(usageexport.DefaultClockSkew)
			if !trusted {
				if latest == nil || !latest.After(limit) {
					t.Fatalf("control: without a trusted clock the records end at %v; the test would not see future billing", latest)
				}
				return
			}
			if c := st.Clock; !c.Skewed || !c.True || c.Type != usageexport.ConditionClockSkew || c.Reason != usageexport.ReasonClockAhead {
				t.Errorf("ClockSkew with the clock 3 days ahead: %+v", c)
			}
			if latest != nil {
				t.Fatalf("a clock 3 days ahead billed records up to %v", latest)
			}

			// Corrected.
			clock.Set(time.Now().UTC().Format(time.RFC3339))
			st, err = m.Pass(ctx, site, usageexport.HubAccess{})
			must(t, err)
			must(t, pool.QueryRow(ctx, "SELECT max(end_at) FROM usage_records").Scan(&latest))
			if latest == nil || latest.After(time.Now().Add(usageexport.DefaultClockSkew)) {
				t.Errorf("after the correction records end at %v, want some, none after now plus the skew", latest)
			}
			if c := st.Clock; c.Skewed || c.True {
				t.Errorf("ClockSkew after the correction: %+v", c)
			}
		})
	}
}
