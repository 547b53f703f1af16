package controller

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/usageexport"
)

// fakeSite is a SiteSource that says what the test tells it to.
type fakeSite struct {
	hub      usageexport.HubAccess
	hubErr   error
	declared []usageexport.Declared
	listErr  error
}

func (s *fakeSite) HubAccess(context.Context, *outpostv1.DataController) (usageexport.HubAccess, error) {
	return s.hub, s.hubErr
}

func (s *fakeSite) DeclaredInstances(context.Context) ([]usageexport.Declared, error) {
	return s.declared, s.listErr
}

// usageLedger is a fresh controldb-like database with the usage schema.
func usageLedger(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	if _, err := pg.Connect(t, "postgres").Exec(ctx, "CREATE DATABASE controldb"); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, pg.URL("controldb"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := usageexport.EnsureSchema(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return pool
}

// TestDataControllerStatusFromTheMeteringPass drives the core reconciler
// with a plain source and a real ledger: the status has the key's
// fingerprint, Ready (metering, or why not, including the source's own
// reasons), exactly one freshness condition, that of the DataController's
// mode, judged against its thresholds, and UsageStreaming in direct mode;
// conditions other writers set are kept.
func TestDataControllerStatusFromTheMeteringPass(t *testing.T) {
	pool := usageLedger(t)
	ctx := context.Background()
	clock := harness.NewClock("2026-11-01T00:00:00Z")
	key, err := usageexport.LoadOrCreateKey(filepath.Join(t.TempDir(), "usage.key"))
	if err != nil {
		t.Fatal(err)
	}
	const uid = "9f0c6d2e-0000-4000-8000-000000000001"
	if err := usageexport.NewLedger(pool, clock).Observe(ctx, usageexport.Instance{UID: uid, Kind: "PostgresInstance", Namespace: "default", Name: "a"},
		usageexport.Shape{MilliVCores: 2000, MemoryBytes: 4 << 30, StorageBytes: 20 << 30}); err != nil {
		t.Fatal(err)
	}
	src := &fakeSite{declared: []usageexport.Declared{{UID: uid}}}
	r := NewDataControllerReconciler(&usageexport.SiteMeter{Pool: pool, Key: key, Version: "test", Clock: clock}, src)

	// No DataController: it samples all the same.
	clock.Set("2026-11-01T03:10:00Z")
	if err := r.MeterWithoutSite(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM usage_records").Scan(&n); err != nil || n != 3 {
		t.Fatalf("%d records after sampling to 03:00 (%v), want 3", n, err)
	}

	dc := &outpostv1.DataController{
		ObjectMeta: metav1.ObjectMeta{Name: "site", Namespace: "default", Generation: 4},
		Spec: outpostv1.DataControllerSpec{
			Site: outpostv1.Site{Name: "plant"},
			Metering: outpostv1.Metering{Interval: metav1.Duration{Duration: 5 * time.Minute},
				WarnAfter: metav1.Duration{Duration: 3 * time.Hour}, OverdueAfter: metav1.Duration{Duration: 6 * time.Hour}},
		},
		Status: outpostv1.DataControllerStatus{Conditions: []metav1.Condition{
			{Type: "Other", Status: metav1.ConditionTrue, Reason: "SetElsewhere", LastTransitionTime: metav1.Now()},
		}},
	}
	reconcile := func() {
		t.Helper()
		after, err := r.Reconcile(ctx, dc)
		if err != nil {
			t.Fatal(err)
		}
		if after != 5*time.Minute {
			t.Errorf("next pass after %s, want the metering interval 5m", after)
		}
	}
	check := func(what, typ, status, reason string) *metav1.Condition {
		t.Helper()
		c := meta.FindStatusCondition(dc.Status.Conditions, typ)
		if c == nil || string(c.Status) != status || c.Reason != reason || (typ != "Other" && c.ObservedGeneration != 4) {
			t.Errorf("%s: condition %s = %+v, want %s/%s at generation 4", what, typ, c, status, reason)
		}
		return c
	}
	absent := func(what, typ string) {
		t.Helper()
		if c := meta.FindStatusCondition(dc.Status.Conditions, typ); c != nil {
			t.Errorf("%s: condition %s should be absent: %+v", what, typ, c)
		}
	}

	reconcile()
	st := dc.Status
	if st.SigningKeyFingerprint != usageexport.Fingerprint(key.Public()) || st.ObservedGeneration != 4 || st.Backlog != 0 || st.LastExportTime != nil {
		t.Errorf("status: %+v", st)
	}
	check("indirect at 3h10m", usageexport.ConditionUsageExported, "False", usageexport.ReasonStale)
	if c := check("indirect at 3h10m", outpostv1.ConditionReady, "True", ReasonMetering); c != nil && c.Message != "usage sampled up to 2026-11-01T03:00:00Z" {
		t.Errorf("Ready says %q", c.Message)
	}
	check("indirect at 3h10m", usageexport.ConditionClockSkew, "False", usageexport.ReasonClockAgrees)
	check("indirect at 3h10m", "Other", "True", "SetElsewhere")
	absent("indirect at 3h10m", usageexport.ConditionUsageStreaming)

	// Direct mode without a token: records wait in the backlog (those
	// sampled in indirect mode too), Ready says why, and only the
	// direct-mode freshness condition remains.
	dc.Spec.Connectivity = outpostv1.Connectivity{Mode: outpostv1.ConnectivityDirect, Hub: &outpostv1.Hub{URL: "http://127.0.0.1:1", AllowInsecureHub: true}}
	clock.Set("2026-11-01T07:00:00Z")
	reconcile()
	if dc.Status.Backlog != 7 {
		t.Errorf("backlog %d after three hours indirect and four direct without a token, want 7", dc.Status.Backlog)
	}
	check("direct without a token", outpostv1.ConditionReady, "False", ReasonNoHubToken)
	check("direct without a token", usageexport.ConditionUsageUploaded, "False", usageexport.ReasonOverdue)
	check("direct without a token", usageexport.ConditionUsageStreaming, "True", usageexport.ReasonStreaming)
	absent("direct without a token", usageexport.ConditionUsageExported)

	// With a token but the hub unreachable: still metering, and the
	// reason usage is not fresher is in the freshness message.
	src.hub = usageexport.HubAccess{Token: "opt_x"}
	reconcile()
	check("direct, hub down", outpostv1.ConditionReady, "True", ReasonMetering)
	check("direct, hub down", usageexport.ConditionUsageStreaming, "False", usageexport.ReasonHubUnreachable)
	if c := meta.FindStatusCondition(dc.Status.Conditions, usageexport.ConditionUsageUploaded); c == nil || !strings.Contains(c.Message, "the last attempt failed") {
		t.Errorf("UsageUploaded with the hub down: %+v", c)
	}

	// The source cannot read the hub's credentials: Ready gives its words.
	src.hub, src.hubErr = usageexport.HubAccess{}, errors.New("connectivity.hub.credentialsSecret default/hub: not found")
	reconcile()
	if c := check("no credentials", outpostv1.ConditionReady, "False", ReasonNoHubToken); c != nil && c.Message != src.hubErr.Error() {
		t.Errorf("Ready without credentials says %q, want the source's error", c.Message)
	}

	// The source cannot list its instances: deleted ones would stay
	// billed, and Ready says so.
	src.hubErr, src.listErr = nil, errors.New("forbidden")
	src.hub = usageexport.HubAccess{Token: "opt_x"}
	reconcile()
	if c := check("no listing", outpostv1.ConditionReady, "False", ReasonOrphanSweepFailed); c != nil && !strings.Contains(c.Message, "forbidden") {
		t.Errorf("Ready without the listing says %q", c.Message)
	}

	// Back to indirect: the upload route's conditions go.
	src.listErr = nil
	dc.Spec.Connectivity = outpostv1.Connectivity{Mode: outpostv1.ConnectivityIndirect}
	reconcile()
	check("indirect again", usageexport.ConditionUsageExported, "False", usageexport.ReasonOverdue)
	absent("indirect again", usageexport.ConditionUsageUploaded)
	absent("indirect again", usageexport.ConditionUsageStreaming)
	if dc.Status.Backlog != 0 {
		t.Errorf("backlog %d in indirect mode, want 0 (nobody waits on it)", dc.Status.Backlog)
	}
}

// A DataController other than the site's one is told so, and shows no
// fingerprint: it does not meter.
func TestDataControllerThatIsNotTheSiteSaysWhichIs(t *testing.T) {
	site := &outpostv1.DataController{ObjectMeta: metav1.ObjectMeta{Name: "site", Namespace: "outpost"}}
	dc := &outpostv1.DataController{ObjectMeta: metav1.ObjectMeta{Name: "second", Namespace: "default", Generation: 2},
		Status: outpostv1.DataControllerStatus{SigningKeyFingerprint: "SHA256:old"}}
	NotTheSite(dc, site)
	c := meta.FindStatusCondition(dc.Status.Conditions, outpostv1.ConditionReady)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonNotTheSite || !strings.Contains(c.Message, "outpost/site") ||
		c.ObservedGeneration != 2 || dc.Status.SigningKeyFingerprint != "" {
		t.Errorf("status of a second DataController: %+v", dc.Status)
	}
}
