package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/controldb"
	"github.com/outpostdata/outpost/controller/kuberuntime"
	"github.com/outpostdata/outpost/controller/kubesource"
	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/usageexport"
	"github.com/outpostdata/outpost/usageexport/hub"
)

// TestUsageRetryBinaryDeliversBatchesTheHubRefused: a direct-mode site
// on Kubernetes (the real manager on envtest's apiserver, controldb in a
// real PostgreSQL, a clock the test moves) streams to a real hub that holds
// another public key for it, as after the signing-key Secret was
// re-created. The hub refuses the first hours; the site sets them aside
// (UsageStreaming BatchRefused) and does not send them again by itself.
// Once the hub holds the right key, later hours flow past them, and the
// real binary's `outpost usage retry --source kubernetes` queues the
// set-aside records again: the hub then has every record exactly once.
func TestUsageRetryBinaryDeliversBatchesTheHubRefused(t *testing.T) {
	api := harness.StartAPIServer(t)
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	c := api.Client
	const ns = "outpost-system"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	db, err := controldb.Open(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)

	// The hub, on its own database, shares the test's clock so that its
	// acknowledgements agree with the site's.
	fc := harness.NewClock("2026-11-03T00:30:00Z")
	if _, err := pg.Connect(t, "postgres").Exec(ctx, "CREATE DATABASE hub"); err != nil {
		t.Fatal(err)
	}
	hubPool, err := hub.Open(ctx, pg.URL("hub"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hubPool.Close)
	h := &hub.Hub{Pool: hubPool, Log: slog.New(slog.DiscardHandler), Now: fc.Now}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h.Handler()}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	_, stale, err := usageexport.NewKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	token, err := h.AddSite(ctx, "plant-7", usageexport.FormatPublicKey(stale.Public()))
	if err != nil {
		t.Fatal(err)
	}

	mgr, err := kubesource.NewManager(kubesource.Options{
		Config: api.Config, Log: harness.Logger(t), MinRequeue: 10 * time.Second,
		NewRuntime: func(c client.Client, s *runtime.Scheme) (controller.Runtime, error) {
			return &kuberuntime.Runtime{Client: c, Scheme: s, Log: slog.New(slog.DiscardHandler), Pods: kuberuntime.PodOptions{Image: "outpost/instance:test"}}, nil
		},
		Usage: &kubesource.UsageOptions{DB: db.Pool, Namespace: ns, Version: "test", Clock: fc},
	})
	if err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() { cancel(); <-done })

	for _, obj := range []client.Object{
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "hub-token", Namespace: "default"}, Data: map[string][]byte{"token": []byte(token)}},
		&outpostv1.DataController{
			ObjectMeta: metav1.ObjectMeta{Name: "site", Namespace: "default"},
			Spec: outpostv1.DataControllerSpec{
				Site: outpostv1.Site{Name: "plant-7"},
				Connectivity: outpostv1.Connectivity{Mode: outpostv1.ConnectivityDirect, Hub: &outpostv1.Hub{
					URL: "http://" + l.Addr().String(), AllowInsecureHub: true, CredentialsSecret: &outpostv1.LocalObjectReference{Name: "hub-token"}}},
				Metering: outpostv1.Metering{Interval: metav1.Duration{Duration: time.Second}},
			},
		},
		&outpostv1.PostgresInstance{
			ObjectMeta: metav1.ObjectMeta{Name: "vec", Namespace: "default"},
			Spec: outpostv1.PostgresInstanceSpec{
				Resources: outpostv1.InstanceResources{CPU: resource.MustParse("2"), Memory: resource.MustParse("512Mi")},
				Storage:   outpostv1.InstanceStorage{Size: resource.MustParse("1Gi")},
			},
		},
	} {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	streaming := func() *metav1.Condition {
		var dc outpostv1.DataController
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "site"}, &dc); err != nil {
			t.Fatal(err)
		}
		return meta.FindStatusCondition(dc.Status.Conditions, usageexport.ConditionUsageStreaming)
	}
	hubTotal := func() usageexport.Total {
		u, err := h.Usage(ctx, "plant-7", "2026-11")
		if err != nil {
			t.Fatal(err)
		}
		return u.Total
	}
	var uid string
	waitFor(t, time.Minute, "pgi/vec in the ledger", func() bool {
		return db.Pool.QueryRow(ctx, `SELECT uid FROM usage_instances WHERE name = 'vec'`).Scan(&uid) == nil
	})

	// 03:00: three records (00:30-01:00, 01:00-02:00, 02:00-03:00 at two
	// cores) go to the hub, which refuses them: set aside, the reason named.
	fc.Set("2026-11-03T03:00:00Z")
	waitFor(t, time.Minute, "UsageStreaming False/BatchRefused naming the hub's reason", func() bool {
		s := streaming()
		return s != nil && s.Status == metav1.ConditionFalse && s.Reason == usageexport.ReasonBatchRefused &&
			strings.Contains(s.Message, "outpost usage retry")
	})
	t.Logf("UsageStreaming: %s", streaming().Message)
	var setAside int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM usage_records WHERE refusal_id IS NOT NULL AND acked_at IS NULL`).Scan(&setAside); err != nil {
		t.Fatal(err)
	}
	if setAside != 3 {
		t.Errorf("%d records set aside, want the 3 hours up to 03:00", setAside)
	}

	// The hub's operator sets the site's real key (`outpost hub site
	// set-key`). The next hours flow past the set-aside batch, which is not
	// sent again by itself.
	if err := h.SetKey(ctx, "plant-7", usageexport.FormatPublicKey(siteKey(t, api, ns).Public())); err != nil {
		t.Fatal(err)
	}
	fc.Set("2026-11-03T05:00:00Z")
	waitFor(t, time.Minute, "the two hours after the fix at the hub", func() bool { return hubTotal().Records == 2 })
	time.Sleep(3 * time.Second) // three more metering passes
	if got := hubTotal(); got.Records != 2 || got.MilliVCoreSeconds != 2*2*3600*1000 {
		t.Fatalf("before retry the hub has %+v, want only the 2 hours after the fix (the set-aside batch stays aside)", got)
	}
	if s := streaming(); s == nil || s.Reason != usageexport.ReasonBatchRefused {
		t.Errorf("UsageStreaming while records are still set aside: %+v", s)
	}

	kubeFlags := []string{"--source", "kubernetes", "--kubeconfig", api.Kubeconfig, "--controller-namespace", ns, "--controldb-url", pg.URL("postgres")}
	retry := func() string {
		t.Helper()
		out, err := exec.Command(outpostBin, append([]string{"usage", "retry"}, kubeFlags...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("outpost usage retry: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := retry(); !strings.Contains(out, "3 usage records the hub refused are queued again") {
		t.Errorf("outpost usage retry said %q, want 3 records queued again", out)
	}
	waitFor(t, time.Minute, "every record at the hub and UsageStreaming True", func() bool {
		s := streaming()
		return hubTotal().Records == 5 && s != nil && s.Status == metav1.ConditionTrue
	})
	// Exactly once: 00:30-05:00 at two cores is 9 vCore-hours in 5 records,
	// each of the site's records once.
	want := int64(2 * (1800 + 4*3600) * 1000)
	if got := hubTotal(); got.Records != 5 || got.MilliVCoreSeconds != want {
		t.Errorf("after retry the hub has %+v, want 5 records, %d milli-vCore-seconds", got, want)
	}
	// The hub holds the site's very records, the hours from 00:30 to 05:00,
	// and the site has none left to send.
	records := func(pool interface {
		Query(context.Context, string, ...any) (pgx.Rows, error)
	}, table string) []string {
		t.Helper()
		rows, err := pool.Query(ctx, `SELECT id, start_at, end_at, milli_vcore_seconds FROM `+table+` WHERE uid = $1 ORDER BY start_at`, uid)
		if err != nil {
			t.Fatal(err)
		}
		out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
			var id string
			var start, end time.Time
			var mvcs int64
			err := r.Scan(&id, &start, &end, &mvcs)
			return fmt.Sprintf("%s %s-%s %d", id, start.UTC().Format("15:04"), end.UTC().Format("15:04"), mvcs), err
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	atSite, atHub := records(db.Pool, "usage_records"), records(hubPool, "hub_records")
	if strings.Join(atSite, "\n") != strings.Join(atHub, "\n") || len(atHub) != 5 ||
		!strings.Contains(atHub[0], " 00:30-01:00 3600000") || !strings.Contains(atHub[4], " 04:00-05:00 7200000") {
		t.Errorf("the hub's records of vec:\n%s\nthe site's:\n%s\nwant the same 5, 00:30 to 05:00 at two cores", strings.Join(atHub, "\n"), strings.Join(atSite, "\n"))
	}
	var unacked int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM usage_records WHERE acked_at IS NULL OR refusal_id IS NOT NULL`).Scan(&unacked); err != nil {
		t.Fatal(err)
	}
	if unacked != 0 {
		t.Errorf("%d of the site's records are not acknowledged after retry", unacked)
	}
	if out := retry(); !strings.Contains(out, "No usage records are set aside") {
		t.Errorf("a second outpost usage retry said %q, want nothing to retry", out)
	}
}

// siteKey reads the site's signing key from its Secret, as the
// controller created it.
func siteKey(t *testing.T, api *harness.APIServer, ns string) usageexport.SigningKey {
	t.Helper()
	k, err := kubesource.LoadSigningKey(context.Background(), api.Client, ns)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
