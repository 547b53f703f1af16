package usageexport_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/usageexport"
)

// TestSiteMeterPassSamplesAndWorksOutTheStatus drives the metering pass both
// runtimes share: it samples, and the status it returns has the key's
// fingerprint, Ready, and exactly one freshness condition, that of the
// DataController's mode, judged against its thresholds; conditions other
// writers set are kept.
func TestSiteMeterPassSamplesAndWorksOutTheStatus(t *testing.T) {
	pg := harness.StartPostgres(t)
	pool, _ := newLedgerDB(t, pg)
	ctx := context.Background()
	clock := harness.NewClock("2026-11-01T00:00:00Z")
	key := newKey(t)
	must(t, usageexport.NewLedger(pool, clock).Observe(ctx, instance(uidA, "a"), shape(2000)))
	m := &usageexport.SiteMeter{Pool: pool, Key: key, Version: "test", Clock: clock}

	// No DataController: it samples and has no status to give.
	clock.Set("2026-11-01T03:10:00Z")
	st, err := m.Pass(ctx, nil, usageexport.HubAccess{})
	must(t, err)
	if st != nil {
		t.Errorf("status without a DataController: %+v", st)
	}
	var n int
	must(t, pool.QueryRow(ctx, "SELECT count(*) FROM usage_records").Scan(&n))
	if n != 3 {
		t.Fatalf("%d records after sampling to 03:00, want 3", n)
	}

	dc := &outpostv1.DataController{
		ObjectMeta: metav1.ObjectMeta{Name: "site", Namespace: "default", Generation: 4},
		Spec: outpostv1.DataControllerSpec{
			Site:     outpostv1.Site{Name: "plant"},
			Metering: outpostv1.Metering{WarnAfter: metav1.Duration{Duration: 3 * time.Hour}, OverdueAfter: metav1.Duration{Duration: 6 * time.Hour}},
		},
		Status: outpostv1.DataControllerStatus{Conditions: []metav1.Condition{
			{Type: "Other", Status: metav1.ConditionTrue, Reason: "SetElsewhere", LastTransitionTime: metav1.Now()},
		}},
	}
	st, err = m.Pass(ctx, dc, usageexport.HubAccess{})
	must(t, err)
	check := func(what, typ, status, reason string) {
		t.Helper()
		c := meta.FindStatusCondition(st.Conditions, typ)
		if c == nil || string(c.Status) != status || c.Reason != reason || (typ != "Other" && c.ObservedGeneration != 4) {
			t.Errorf("%s: condition %s = %+v, want %s/%s at generation 4", what, typ, c, status, reason)
		}
	}
	if st.SigningKeyFingerprint != usageexport.Fingerprint(key.Public()) || st.ObservedGeneration != 4 || st.Backlog != 0 {
		t.Errorf("status: %+v", st)
	}
	check("indirect at 3h10m", usageexport.ConditionUsageExported, "False", usageexport.ReasonStale)
	check("indirect at 3h10m", outpostv1.ConditionReady, "True", usageexport.ReasonMetering)
	check("indirect at 3h10m", "Other", "True", "SetElsewhere")

	// Direct mode without a token: records wait in the backlog (those
	// sampled in indirect mode too), Ready says why, and only the
	// direct-mode condition remains.
	dc.Status = *st
	dc.Spec.Connectivity = outpostv1.Connectivity{Mode: outpostv1.ConnectivityDirect, Hub: &outpostv1.Hub{URL: "http://127.0.0.1:1"}}
	clock.Set("2026-11-01T07:00:00Z")
	st, err = m.Pass(ctx, dc, usageexport.HubAccess{})
	must(t, err)
	if st.Backlog != 7 {
		t.Errorf("backlog %d after three hours indirect and four direct without a token, want 7", st.Backlog)
	}
	check("direct without a token", outpostv1.ConditionReady, "False", usageexport.ReasonNoHubToken)
	check("direct without a token", usageexport.ConditionUsageUploaded, "False", usageexport.ReasonOverdue)
	if c := meta.FindStatusCondition(st.Conditions, usageexport.ConditionUsageExported); c != nil {
		t.Errorf("indirect-mode condition kept in direct mode: %+v", c)
	}

	// With a token but the hub unreachable, the reason is in the message.
	st, err = m.Pass(ctx, dc, usageexport.HubAccess{Token: "opt_x"})
	must(t, err)
	check("direct, hub down", outpostv1.ConditionReady, "True", usageexport.ReasonMetering)
	if c := meta.FindStatusCondition(st.Conditions, usageexport.ConditionUsageUploaded); c == nil || !strings.Contains(c.Message, "the last attempt failed") {
		t.Errorf("UsageUploaded with the hub down: %+v", c)
	}
}
