package dirsource

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/controldb"
	"github.com/outpostdata/outpost/controller/manifest"
	"github.com/outpostdata/outpost/test/harness"
)

// TestStatusWrittenDuringAPassSurvivesIt reproduces the race between the
// single host's usage loop, which writes the DataController's status every
// metering interval, and a manifest pass, which reads every stored object at
// its start and stores each one again at its end. The site callback runs in
// between, so writing the status there is exactly the interleaving that
// used to lose the update: the pass stored the status it had read before.
func TestStatusWrittenDuringAPassSurvivesIt(t *testing.T) {
	ctx := context.Background()
	c, db, dir := newTestController(t)
	if err := os.WriteFile(filepath.Join(dir, "site.yaml"), []byte(`apiVersion: outpost.dev/v1alpha1
kind: DataController
metadata: {name: site, namespace: default}
spec:
  site: {name: plant-7}
`), 0o644); err != nil {
		t.Fatal(err)
	}

	backlog := int64(0)
	c.OnSite(func(dc *outpostv1.DataController) {
		if dc == nil || backlog == 0 {
			return
		}
		// What the usage loop writes (singlehost usageRun.writeStatus).
		st, _ := json.Marshal(outpostv1.DataControllerStatus{Backlog: backlog, SigningKeyFingerprint: "SHA256:test"})
		if _, err := db.Pool.Exec(ctx, `UPDATE objects SET object = jsonb_set(object, '{status}', COALESCE(object->'status', '{}') || $1::jsonb)
			WHERE kind = 'DataController'`, string(st)); err != nil {
			t.Error(err)
		}
	})
	stored := func() outpostv1.DataControllerStatus {
		t.Helper()
		rec, ok, err := db.Object(ctx, "DataController", "default", "site")
		if err != nil || !ok {
			t.Fatalf("stored DataController: ok=%v err=%v", ok, err)
		}
		var dc outpostv1.DataController
		if err := json.Unmarshal(rec.Object, &dc); err != nil {
			t.Fatal(err)
		}
		if dc.Spec.Site.Name != "plant-7" {
			t.Errorf("stored spec.site.name = %q, want plant-7", dc.Spec.Site.Name)
		}
		return dc.Status
	}

	c.pass(ctx) // stores the DataController, with no status yet
	for _, b := range []int64{7, 3, 12} {
		backlog = b
		c.pass(ctx) // the status is written after the pass read it
		if got := stored(); got.Backlog != b || got.SigningKeyFingerprint != "SHA256:test" {
			t.Errorf("status written during a pass: backlog %d, fingerprint %q after the pass; want %d, SHA256:test", got.Backlog, got.SigningKeyFingerprint, b)
		}
	}
	// A pass with no concurrent writer keeps the status too, and a spec
	// edit changes the spec without touching the status.
	backlog = 0
	if err := os.WriteFile(filepath.Join(dir, "site.yaml"), []byte(`apiVersion: outpost.dev/v1alpha1
kind: DataController
metadata: {name: site, namespace: default}
spec:
  site: {name: plant-7, labels: {region: north}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	c.pass(ctx)
	if got := stored(); got.Backlog != 12 {
		t.Errorf("after a spec edit, status backlog = %d, want 12 (kept)", got.Backlog)
	}
	rec, _, _ := db.Object(ctx, "DataController", "default", "site")
	if rec.Generation != 2 {
		t.Errorf("generation after a spec edit = %d, want 2", rec.Generation)
	}
}

// newTestController is a manifest source on a fresh directory, with
// controldb in a real PostgreSQL and no instance reconciler.
func newTestController(t *testing.T) (*Controller, *controldb.DB, string) {
	t.Helper()
	pg := harness.StartPostgres(t)
	db, err := controldb.Open(context.Background(), pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	v, err := manifest.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	dir := harness.TempDir(t)
	return New(dir, v, db, nil, harness.Logger(t)), db, dir
}
