package kubesource_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
)

// TestPostgresInstanceWhoseFinalizerIsRemovedByHandWhileTheControllerIsDownIsClosedAtItsLastSighting
// runs the real manager (instance and DataController reconcilers) against
// envtest's apiserver, with controldb in a real PostgreSQL and a clock the
// test moves. A PostgresInstance is metered from 09:10 and last listed at
// 09:40; the manager stops; the instance is deleted and, its finalizer
// holding it, the finalizer is stripped by hand, so it vanishes without any
// controller seeing a deletionTimestamp. The manager restarts at 11:20.
// As the README's billing policy says, the orphan sweep closes it at its
// last sighting, 09:40: it is not billed for the hours the controller was
// down, nor after, while the instance still declared is billed through
// them. The month's export says the same.
func TestPostgresInstanceWhoseFinalizerIsRemovedByHandWhileTheControllerIsDownIsClosedAtItsLastSighting(t *testing.T) {
	api := harness.StartAPIServer(t)
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	db, err := controldb.Open(ctx, pg.URL("postgres"))
	must(t, err)
	t.Cleanup(db.Close)
	c := api.Client
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: controllerNamespace}}))

	fc := harness.NewClock("2026-11-02T09:10:00Z")
	start := func() (stop func()) {
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
		var stopped bool
		stop = func() {
			if !stopped {
				stopped = true
				cancel()
				must(t, <-done)
			}
		}
		t.Cleanup(stop)
		return stop
	}
	stop := start()

	must(t, c.Create(ctx, &outpostv1.DataController{
		ObjectMeta: metav1.ObjectMeta{Name: "site", Namespace: "default"},
		Spec: outpostv1.DataControllerSpec{
			Site:     outpostv1.Site{Name: "plant-7"},
			Metering: outpostv1.Metering{Interval: metav1.Duration{Duration: time.Second}},
		},
	}))
	orphan := newInstance(t, c, "orphan", "2")
	kept := newInstance(t, c, "kept", "1")
	type ledgerRow struct {
		intervals int
		lastSeen  time.Time
		end       *time.Time
		deleted   *time.Time
	}
	ledger := func(inst *outpostv1.PostgresInstance) ledgerRow {
		t.Helper()
		var r ledgerRow
		err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM usage_intervals WHERE uid = $1),
				COALESCE(i.last_seen_at, i.created_at), (SELECT max(end_at) FROM usage_intervals WHERE uid = $1), i.deleted_at
			FROM usage_instances i WHERE i.uid = $1`, string(inst.UID)).Scan(&r.intervals, &r.lastSeen, &r.end, &r.deleted)
		if err != nil {
			return ledgerRow{}
		}
		return r
	}
	waitFor(t, "both instances in the ledger and the orphan's finalizer on", func() bool {
		must(t, c.Get(ctx, client.ObjectKeyFromObject(orphan), orphan))
		return ledger(orphan).intervals == 1 && ledger(kept).intervals == 1 && len(orphan.Finalizers) > 0
	})

	// 09:40: the last metering pass that lists the orphan.
	lastSighting := time.Date(2026, 11, 2, 9, 40, 0, 0, time.UTC)
	fc.Set("2026-11-02T09:40:00Z")
	waitFor(t, "a listing at 09:40 marking both seen", func() bool {
		return ledger(orphan).lastSeen.Equal(lastSighting) && ledger(kept).lastSeen.Equal(lastSighting)
	})
	stop()

	// 11:20, with no controller running: delete the orphan, then strip
	// the finalizer that holds it, as an impatient user does.
	fc.Set("2026-11-02T11:20:00Z")
	must(t, c.Delete(ctx, orphan))
	must(t, c.Get(ctx, client.ObjectKeyFromObject(orphan), orphan))
	if orphan.DeletionTimestamp == nil {
		t.Fatalf("deleting the orphan did not wait for its finalizers %v", orphan.Finalizers)
	}
	patch := client.MergeFrom(orphan.DeepCopy())
	orphan.Finalizers = nil
	must(t, c.Patch(ctx, orphan, patch))
	waitFor(t, "the orphan gone from the apiserver", func() bool {
		return apierrors.IsNotFound(c.Get(ctx, client.ObjectKeyFromObject(orphan), &outpostv1.PostgresInstance{}))
	})
	if r := ledger(orphan); r.end != nil || r.deleted != nil {
		t.Fatalf("the ledger closed the orphan while no controller ran: %+v", r)
	}

	start()
	waitFor(t, "the orphan closed and kept's records up to 11:00", func() bool {
		var until *time.Time
		must(t, db.Pool.QueryRow(ctx, `SELECT max(end_at) FROM usage_records WHERE uid = $1`, string(kept.UID)).Scan(&until))
		return ledger(orphan).deleted != nil && until != nil && until.Equal(time.Date(2026, 11, 2, 11, 0, 0, 0, time.UTC))
	})
	if r := ledger(orphan); r.end == nil || !r.end.Equal(lastSighting) || !r.deleted.Equal(lastSighting) {
		t.Errorf("the orphan's interval ends at %v, deleted at %v; want both at its last sighting %s", r.end, r.deleted, lastSighting)
	}
	if r := ledger(kept); r.end != nil || r.deleted != nil {
		t.Errorf("kept, still declared, was closed at %v (deleted %v)", r.end, r.deleted)
	}

	// The month's export, as `outpost usage export --source kubernetes`
	// writes it: the orphan has one record, 09:10-09:40 at 2 cores (one
	// vCore-hour), and is listed as deleted at 09:40; kept is billed
	// through the hours the controller was down.
	stop()
	access := kubesource.UsageAccess{Config: api.Config, Namespace: controllerNamespace, ControlDBURL: pg.URL("postgres")}
	res, _, err := access.Export(ctx, "2026-11", "test", false)
	must(t, err)
	key, err := access.Key(ctx)
	must(t, err)
	v, err := usageexport.Verify(res.File, usageexport.VerifyOptions{PublicKey: key.Public()})
	if err != nil {
		t.Fatalf("the export does not verify: %v", err)
	}
	var orphanRecs []usageexport.Record
	var keptDown int64
	for _, r := range v.Payload.Records {
		switch r.UID {
		case string(orphan.UID):
			orphanRecs = append(orphanRecs, r)
		case string(kept.UID):
			if r.Start.Before(time.Date(2026, 11, 2, 11, 0, 0, 0, time.UTC)) {
				keptDown += r.MilliVCoreSeconds
			}
		}
	}
	if len(orphanRecs) != 1 || !orphanRecs[0].Start.Equal(time.Date(2026, 11, 2, 9, 10, 0, 0, time.UTC)) ||
		!orphanRecs[0].End.Equal(lastSighting) || orphanRecs[0].MilliVCoreSeconds != 2*1800*1000 {
		t.Errorf("the orphan's exported records: %+v; want one, 09:10-09:40 at 2 cores (%d milli-vCore-seconds)", orphanRecs, 2*1800*1000)
	}
	// 09:10-10:00 and 10:00-11:00 at one core: the controller's downtime
	// is billed for what stayed declared.
	if keptDown != 1000*(3000+3600) {
		t.Errorf("kept billed %d milli-vCore-seconds from 09:10 to 11:00, want %d (through the downtime)", keptDown, 1000*(3000+3600))
	}
	var listed bool
	for _, i := range v.Payload.Instances {
		if i.UID == string(orphan.UID) {
			listed = true
			if i.DeletedAt == nil || !i.DeletedAt.Equal(lastSighting) {
				t.Errorf("the export lists the orphan deleted at %v, want %s", i.DeletedAt, lastSighting)
			}
		}
	}
	if !listed {
		t.Errorf("the export does not list the orphan among its instances")
	}
}
