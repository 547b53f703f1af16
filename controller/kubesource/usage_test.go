package kubesource_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/controldb"
	"github.com/outpostdata/outpost/controller/kuberuntime"
	"github.com/outpostdata/outpost/controller/kubesource"
	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/usageexport"
	"github.com/outpostdata/outpost/usageexport/hub"
)

const controllerNamespace = "outpost-system"

// vch is milli-vCore-seconds per vCore-hour.
const vch = 3600 * 1000

// TestDataControllerMetersPostgresInstancesOnKubernetes runs the kube
// manager against envtest's real apiserver with controldb in a real
// PostgreSQL and a clock the test moves: PostgresInstance CRs are metered
// across an hour and a month boundary (created, scaled, deleted), the
// signing key is a Secret, the DataController's status and the Prometheus
// gauges follow freshness (Stale after warnAfter, Fresh after an export),
// direct mode streams to a real hub through an outage with the backlog in
// status (everything not yet acknowledged, including what was sampled in
// indirect mode), an orphaned ledger entry is closed at its last sighting,
// and `outpost usage export --source kubernetes` (UsageAccess)
// writes files that verify with exactly the hand-computed vCore-hours.
func TestDataControllerMetersPostgresInstancesOnKubernetes(t *testing.T) {
	api := harness.StartAPIServer(t)
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	db, err := controldb.Open(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	c := api.Client
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: controllerNamespace}}))

	fc := harness.NewClock("2026-09-30T22:30:00Z")
	mgr, err := kubesource.NewManager(kubesource.Options{
		Config: api.Config, Log: harness.Logger(t), MinRequeue: 10 * time.Second,
		NewRuntime: func(c client.Client, s *runtime.Scheme) (controller.Runtime, error) {
			return &kuberuntime.Runtime{Client: c, Scheme: s, Log: slog.New(slog.DiscardHandler), Pods: kuberuntime.PodOptions{Image: "outpost/instance:test"}}, nil
		},
		Usage: &kubesource.UsageOptions{DB: db.Pool, Namespace: controllerNamespace, Version: "test", Clock: fc},
	})
	must(t, err)
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// The signing key Secret exists once the controller leads, before any
	// DataController does.
	var secret corev1.Secret
	waitFor(t, "the signing key Secret", func() bool {
		return c.Get(ctx, client.ObjectKey{Namespace: controllerNamespace, Name: kubesource.SigningKeySecretName}, &secret) == nil
	})
	key, err := kubesource.LoadSigningKey(ctx, c, controllerNamespace)
	must(t, err)
	if secret.Immutable == nil || !*secret.Immutable || secret.Labels[kubesource.ManagedByLabel] != kubesource.ManagedByValue {
		t.Errorf("signing key Secret: immutable %v, labels %v", secret.Immutable, secret.Labels)
	}
	access := kubesource.UsageAccess{Config: api.Config, Namespace: controllerNamespace, ControlDBURL: pg.URL("postgres")}
	if k, err := access.Key(ctx); err != nil || !k.Public().Equal(key.Public()) {
		t.Fatalf("UsageAccess.Key (outpost usage key --source kubernetes) = %v, %v; want the Secret's key", k.Public(), err)
	}

	// Two instances at 22:30 on 30 September.
	a := newInstance(t, c, "a", "2")
	b := newInstance(t, c, "b", "500m")
	intervals := func(inst *outpostv1.PostgresInstance) (n int, deleted bool) {
		must(t, db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM usage_intervals WHERE uid = $1),
			COALESCE((SELECT deleted_at IS NOT NULL FROM usage_instances WHERE uid = $1), false)`, string(inst.UID)).Scan(&n, &deleted))
		return n, deleted
	}
	waitFor(t, "both instances in the ledger", func() bool {
		na, _ := intervals(a)
		nb, _ := intervals(b)
		return na == 1 && nb == 1
	})
	// What a PostgresInstance deleted with its finalizer removed by hand
	// while the controller was down leaves behind: open in the ledger, gone
	// from the apiserver (usage_orphan_test.go does it for real, stopping
	// the manager). The orphan sweep closes it at its last sighting,
	// 22:30, so it bills nothing below; left open, it would bill 4 cores
	// to the end of October.
	orphan := usageexport.Instance{UID: "6b0e6a2c-0000-4000-8000-0000000000ff", Kind: "PostgresInstance", Namespace: "default", Name: "gone"}
	must(t, usageexport.NewLedger(db.Pool, fc).Observe(ctx, orphan, usageexport.Shape{MilliVCores: 4000}))

	dc := &outpostv1.DataController{
		ObjectMeta: metav1.ObjectMeta{Name: "site", Namespace: "default"},
		Spec: outpostv1.DataControllerSpec{
			Site: outpostv1.Site{Name: "plant-7", Labels: map[string]string{"region": "north"}},
			Metering: outpostv1.Metering{
				Interval:     metav1.Duration{Duration: time.Second},
				WarnAfter:    metav1.Duration{Duration: 2 * time.Hour},
				OverdueAfter: metav1.Duration{Duration: 5 * time.Hour},
			},
		},
	}
	must(t, c.Create(ctx, dc))
	status := func() outpostv1.DataControllerStatus {
		var got outpostv1.DataController
		must(t, c.Get(ctx, client.ObjectKeyFromObject(dc), &got))
		return got.Status
	}
	cond := func(typ string) (string, string) {
		if c := meta.FindStatusCondition(status().Conditions, typ); c != nil {
			return string(c.Status), c.Reason
		}
		return "", ""
	}
	waitFor(t, "DataController status: fingerprint, Ready, Fresh", func() bool {
		st := status()
		rs, rr := cond(outpostv1.ConditionReady)
		fs, fr := cond(usageexport.ConditionUsageExported)
		return st.SigningKeyFingerprint == usageexport.Fingerprint(key.Public()) && st.ObservedGeneration == 1 &&
			rs == "True" && rr == controller.ReasonMetering && fs == "True" && fr == usageexport.ReasonFresh
	})

	// A second DataController is not a second site.
	second := &outpostv1.DataController{ObjectMeta: metav1.ObjectMeta{Name: "another", Namespace: "default"},
		Spec: outpostv1.DataControllerSpec{Site: outpostv1.Site{Name: "elsewhere"}}}
	must(t, c.Create(ctx, second))
	waitFor(t, "the second DataController told it is not the site", func() bool {
		must(t, c.Get(ctx, client.ObjectKeyFromObject(second), second))
		r := meta.FindStatusCondition(second.Status.Conditions, outpostv1.ConditionReady)
		return r != nil && r.Status == metav1.ConditionFalse && r.Reason == controller.ReasonNotTheSite && second.Status.SigningKeyFingerprint == ""
	})
	must(t, c.Delete(ctx, second))

	// 01:15 on 1 October: a scales to one core, b is deleted.
	fc.Set("2026-10-01T01:15:00Z")
	updateSpec(t, c, a, func() { a.Spec.Resources.CPU = resource.MustParse("1") })
	must(t, c.Delete(ctx, b))
	waitFor(t, "a's scale and b's deletion in the ledger", func() bool {
		na, _ := intervals(a)
		_, deleted := intervals(b)
		return na == 2 && deleted
	})
	waitFor(t, "the orphan closed at its last sighting", func() bool {
		var end *time.Time
		must(t, db.Pool.QueryRow(ctx, `SELECT max(end_at) FROM usage_intervals WHERE uid = $1`, orphan.UID).Scan(&end))
		return end != nil && end.Equal(time.Date(2026, 9, 30, 22, 30, 0, 0, time.UTC))
	})

	// 02:00: the sampler (in the DataController's pass) closes the hour,
	// and the site has gone 3.5 h without an export: Stale.
	fc.Set("2026-10-01T02:00:00Z")
	waitFor(t, "records up to 02:00 and UsageExported Stale", func() bool {
		var until *time.Time
		must(t, db.Pool.QueryRow(ctx, `SELECT max(end_at) FROM usage_records WHERE uid = $1`, string(a.UID)).Scan(&until))
		s, r := cond(usageexport.ConditionUsageExported)
		return until != nil && until.Equal(fc.Now()) && s == "False" && r == usageexport.ReasonStale
	})
	if v := gauge(t, "outpost_usage_freshness", map[string]string{"condition": usageexport.ConditionUsageExported, "reason": usageexport.ReasonStale}); v != 1 {
		t.Errorf("outpost_usage_freshness{UsageExported,Stale} = %v, want 1", v)
	}
	if v := gauge(t, "outpost_usage_age_seconds", map[string]string{"condition": usageexport.ConditionUsageExported}); v != 3.5*3600 {
		t.Errorf("outpost_usage_age_seconds = %v, want %v (since metering began at 22:30)", v, 3.5*3600)
	}
	waitFor(t, "a Warning event Stale on the DataController", func() bool {
		var events corev1.EventList
		must(t, c.List(ctx, &events, client.InNamespace("default")))
		for _, e := range events.Items {
			if e.InvolvedObject.Name == "site" && e.Reason == usageexport.ReasonStale && e.Type == corev1.EventTypeWarning {
				return true
			}
		}
		return false
	})

	// Direct mode: the site streams to a hub with the token from a Secret.
	hubPool := hubDB(t, pg)
	h := &hub.Hub{Pool: hubPool, Log: slog.New(slog.DiscardHandler), Now: fc.Now}
	token, err := h.AddSite(ctx, "plant-7", usageexport.FormatPublicKey(key.Public()))
	must(t, err)
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	serve := func() *http.Server {
		l, err := net.Listen("tcp", addr)
		must(t, err)
		srv := &http.Server{Handler: h.Handler()}
		go srv.Serve(l)
		return srv
	}
	srv := serve()
	must(t, c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "hub-token", Namespace: "default"},
		Data: map[string][]byte{"token": []byte(token + "\n")}}))
	updateSpec(t, c, dc, func() {
		dc.Spec.Connectivity = outpostv1.Connectivity{Mode: outpostv1.ConnectivityDirect, Hub: &outpostv1.Hub{
			URL: "http://" + addr, AllowInsecureHub: true, CredentialsSecret: &outpostv1.LocalObjectReference{Name: "hub-token"}}}
	})
	fc.Set("2026-10-01T05:00:00Z")
	hubTotal := func() usageexport.Total {
		u, err := h.Usage(ctx, "plant-7", "2026-10")
		must(t, err)
		return u.Total
	}
	// Everything not yet acknowledged goes, including the hours sampled
	// in indirect mode: in October a's 6 records (00:00-01:15 at 2 cores,
	// then 1 core to 05:00) and b's 2 (00:00-01:15 at 0.5).
	octoberSoFar := int64(2*vch + vch/2 + 3*vch + 3*vch/4 + 5*vch/8)
	waitFor(t, "everything up to 05:00 streamed; UsageUploaded Fresh; UsageExported gone", func() bool {
		st := status()
		s, r := cond(usageexport.ConditionUsageUploaded)
		streaming, _ := cond(usageexport.ConditionUsageStreaming)
		exported, _ := cond(usageexport.ConditionUsageExported)
		return hubTotal().Records == 8 && st.Backlog == 0 && st.LastUploadTime != nil &&
			s == "True" && r == usageexport.ReasonFresh && streaming == "True" && exported == ""
	})
	if got := hubTotal(); got.MilliVCoreSeconds != octoberSoFar {
		t.Errorf("hub total after streaming: %d milli-vCore-seconds, want %d", got.MilliVCoreSeconds, octoberSoFar)
	}
	if u, err := h.Usage(ctx, "plant-7", "2026-09"); err != nil || u.Total.MilliVCoreSeconds != 3*vch+3*vch/4 {
		t.Errorf("hub's September (sampled in indirect mode, sent on the switch): %+v, %v", u, err)
	}

	// The hub goes away for two hours: the backlog shows in status and
	// metrics, then drains exactly.
	srv.Close()
	fc.Set("2026-10-01T07:00:00Z")
	waitFor(t, "backlog of 2 in status and metrics", func() bool {
		return status().Backlog == 2 && gauge(t, "outpost_usage_backlog_records", nil) == 2
	})
	srv = serve()
	defer srv.Close()
	waitFor(t, "backlog drained", func() bool { return status().Backlog == 0 && hubTotal().Records == 10 })
	if got := hubTotal(); got.MilliVCoreSeconds != octoberSoFar+2*vch {
		t.Errorf("hub total after the outage: %d milli-vCore-seconds, want %d", got.MilliVCoreSeconds, octoberSoFar+2*vch)
	}

	// Back to indirect; export both months as the CLI does and verify them
	// against the site's public key.
	updateSpec(t, c, dc, func() { dc.Spec.Connectivity = outpostv1.Connectivity{Mode: outpostv1.ConnectivityIndirect} })
	waitFor(t, "indirect again", func() bool { s, _ := cond(usageexport.ConditionUsageExported); return s != "" })
	for _, want := range []struct {
		month string
		mvcs  int64
	}{
		// 22:30-24:00: a at 2 cores, b at 0.5: 3 + 0.75 vCore-hours.
		{"2026-09", 3*vch + 3*vch/4},
		// a: 00:00-01:15 at 2 (2.5) and then one core to the end of
		// October (742.75: the wall clock, which export samples with, is
		// past October); b: 00:00-01:15 at 0.5 (0.625).
		{"2026-10", 2*vch + vch/2 + 742*vch + 3*vch/4 + 5*vch/8},
	} {
		res, site, err := access.Export(ctx, want.month, "test", false)
		must(t, err)
		v, err := usageexport.Verify(res.File, usageexport.VerifyOptions{PublicKey: key.Public()})
		if err != nil {
			t.Fatalf("export %s does not verify: %v", want.month, err)
		}
		if site != "plant-7" || v.Payload.Site.Name != "plant-7" || v.Payload.Site.Labels["region"] != "north" {
			t.Errorf("export %s site %q %v, want plant-7 with region north", want.month, site, v.Payload.Site)
		}
		if v.Payload.Total.MilliVCoreSeconds != want.mvcs || v.Payload.Period.Partial {
			t.Errorf("export %s: %d milli-vCore-seconds (%s vCore-hours), partial %v; want %d (%s), complete",
				want.month, v.Payload.Total.MilliVCoreSeconds, v.Payload.Total.VCoreHours, v.Payload.Period.Partial, want.mvcs, usageexport.VCoreHours(want.mvcs))
		}
	}
	// The export counts as usage leaving the site.
	waitFor(t, "UsageExported Fresh after the export", func() bool {
		s, r := cond(usageexport.ConditionUsageExported)
		return status().LastExportTime != nil && s == "True" && r == usageexport.ReasonFresh
	})
}

func newInstance(t *testing.T, c client.Client, name, cpu string) *outpostv1.PostgresInstance {
	t.Helper()
	inst := &outpostv1.PostgresInstance{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: outpostv1.PostgresInstanceSpec{
			Resources: outpostv1.InstanceResources{CPU: resource.MustParse(cpu), Memory: resource.MustParse("512Mi")},
			Storage:   outpostv1.InstanceStorage{Size: resource.MustParse("1Gi")},
		},
	}
	must(t, c.Create(context.Background(), inst))
	return inst
}

func hubDB(t *testing.T, pg *harness.Postgres) *pgxpool.Pool {
	t.Helper()
	conn := pg.Connect(t, "postgres")
	if _, err := conn.Exec(context.Background(), "CREATE DATABASE hub"); err != nil {
		t.Fatal(err)
	}
	pool, err := hub.Open(context.Background(), pg.URL("hub"))
	must(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// gauge reads one gauge from controller-runtime's registry, which the
// manager's metrics endpoint serves.
func gauge(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	must(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if hasLabels(m, labels) {
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
			n++
		}
	}
	return n == len(want)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 60 s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// updateSpec applies change to a fresh read of obj and writes it, again on a
// conflict: the reconciler writes the same object's status meanwhile.
func updateSpec(t *testing.T, c client.Client, obj client.Object, change func()) {
	t.Helper()
	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		change()
		return c.Update(context.Background(), obj)
	}))
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
