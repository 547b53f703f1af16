package controldb_test

import (
	"context"
	"encoding/json"
	"net"
	"strconv"
	"testing"

	"github.com/outpostdata/outpost/controller/controldb"
	"github.com/outpostdata/outpost/test/harness"
)

func openDB(t *testing.T) *controldb.DB {
	t.Helper()
	pg := harness.StartPostgres(t)
	db, err := controldb.Open(context.Background(), pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

func TestOpenTwiceAppliesMigrationsOnce(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		db, err := controldb.Open(ctx, pg.URL("postgres"))
		if err != nil {
			t.Fatalf("open %d: %v", i+1, err)
		}
		db.Close()
	}
	conn := pg.Connect(t, "postgres")
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n < 1 {
		t.Errorf("schema_migrations has %d rows", n)
	}
	var dup int
	conn.QueryRow(ctx, "SELECT count(*) - count(DISTINCT version) FROM schema_migrations").Scan(&dup)
	if dup != 0 {
		t.Errorf("%d migrations applied twice", dup)
	}
}

func TestPortsAreStableUniqueAndSkipBusyOnes(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	from := busy.Addr().(*net.TCPAddr).Port

	a, err := db.AllocatePort(ctx, "default", "a", from)
	if err != nil {
		t.Fatal(err)
	}
	if a == from {
		t.Errorf("allocated %d, which something listens on", a)
	}
	b, err := db.AllocatePort(ctx, "default", "b", from)
	if err != nil {
		t.Fatal(err)
	}
	if b == a {
		t.Errorf("two instances got port %d", a)
	}
	again, _ := db.AllocatePort(ctx, "default", "a", from)
	if again != a {
		t.Errorf("a's port moved from %d to %d", a, again)
	}
	if err := db.ReleasePort(ctx, "default", "a"); err != nil {
		t.Fatal(err)
	}
	if c, _ := db.AllocatePort(ctx, "default", "c", from); c != a {
		t.Errorf("a released port %d was not reused (got %s)", a, strconv.Itoa(c))
	}
}

func TestObjectsKeepTheirUIDAndEventsAreTrimmed(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	rec := controldb.Record{Kind: "PostgresInstance", Namespace: "default", Name: "x", UID: "6f1c1f6e-8e1a-4a43-9d0e-1d1d1d1d1d1d",
		Generation: 1, SpecHash: "h1", SourceFile: "x.yaml", Object: []byte(`{"spec":{}}`)}
	if err := db.PutObject(ctx, rec); err != nil {
		t.Fatal(err)
	}
	rec.Generation, rec.SpecHash = 2, "h2"
	rec.UID = "00000000-0000-0000-0000-000000000000"
	if err := db.PutObject(ctx, rec); err != nil {
		t.Fatal(err)
	}
	got, ok, err := db.Object(ctx, "PostgresInstance", "default", "x")
	if err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	if got.UID != "6f1c1f6e-8e1a-4a43-9d0e-1d1d1d1d1d1d" || got.Generation != 2 {
		t.Errorf("after an update uid=%s generation=%d, want the first uid and generation 2", got.UID, got.Generation)
	}

	for i := 0; i < 60; i++ {
		if err := db.RecordEvent(ctx, "PostgresInstance", "default", "x", controldb.Event{Type: "Normal", Reason: "R", Message: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	events, err := db.Events(ctx, "PostgresInstance", "default", "x")
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 50 || events[len(events)-1].Message != "59" || events[0].Message != "10" {
		t.Errorf("kept %d events from %q to %q, want the newest 50 (10..59)", len(events), events[0].Message, events[len(events)-1].Message)
	}
	if err := db.DeleteObject(ctx, "PostgresInstance", "default", "x"); err != nil {
		t.Fatal(err)
	}
	if events, _ := db.Events(ctx, "PostgresInstance", "default", "x"); len(events) != 0 {
		t.Errorf("%d events outlived their object", len(events))
	}
}

func TestManifestErrorsKeepWhenFirstSeen(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	first := []controldb.ManifestError{{File: "a.yaml", Message: "a.yaml:spec.x: bad"}}
	if err := db.SetManifestErrors(ctx, first); err != nil {
		t.Fatal(err)
	}
	before, _ := db.ManifestErrors(ctx)
	if err := db.SetManifestErrors(ctx, append(first, controldb.ManifestError{File: "b.yaml", Message: "b.yaml:spec.y: bad"})); err != nil {
		t.Fatal(err)
	}
	after, _ := db.ManifestErrors(ctx)
	if len(after) != 2 || !after[0].FirstSeen.Equal(before[0].FirstSeen) {
		t.Errorf("errors %v, want a.yaml's first sighting kept (%v)", after, before)
	}
	if err := db.SetManifestErrors(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if now, _ := db.ManifestErrors(ctx); len(now) != 0 {
		t.Errorf("fixed manifests still reported: %v", now)
	}
}

func TestVerificationSurvivesAControllerPassThatReadTheObjectBefore(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	put := func(status string) {
		t.Helper()
		obj := `{"kind":"Backup","metadata":{"name":"b1","namespace":"default"},"spec":{"instance":{"name":"src"}},"status":` + status + `}`
		if err := db.PutObject(ctx, controldb.Record{Kind: "Backup", Namespace: "default", Name: "b1", UID: "7d3a9f60-6c1e-4c36-9a53-2b8f4c1e0a11", Generation: 1, SpecHash: "h", Object: []byte(obj)}); err != nil {
			t.Fatal(err)
		}
	}
	put(`{"phase":"Completed","backupID":"20261121T200000Z"}`)
	if names, err := db.SetVerification(ctx, "default", "src", "no-such-id", []byte(`{"checksumsOK":true}`)); err != nil || len(names) != 0 {
		t.Fatalf("verification of an unknown backup recorded on %v (%v)", names, err)
	}
	names, err := db.SetVerification(ctx, "default", "src", "20261121T200000Z", []byte(`{"checksumsOK":true,"restored":true}`))
	if err != nil || len(names) != 1 || names[0] != "b1" {
		t.Fatalf("SetVerification: %v %v", names, err)
	}
	// The controller writes the status it read before the verify finished.
	put(`{"phase":"Completed","backupID":"20261121T200000Z","observedGeneration":1}`)
	rec, _, err := db.Object(ctx, "Backup", "default", "b1")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Status struct {
			ObservedGeneration int64 `json:"observedGeneration"`
			Verification       *struct {
				ChecksumsOK bool `json:"checksumsOK"`
				Restored    bool `json:"restored"`
			} `json:"verification"`
		} `json:"status"`
	}
	if err := json.Unmarshal(rec.Object, &got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Verification == nil || !got.Status.Verification.ChecksumsOK || !got.Status.Verification.Restored || got.Status.ObservedGeneration != 1 {
		t.Fatalf("stored status after the controller's write: %s", rec.Object)
	}
}
