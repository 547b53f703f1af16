package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/vectorstore"
)

// oneDatabase locates every database at one real server.
type oneDatabase struct{ pg *harness.Postgres }

func (d oneDatabase) DatabaseURL(_ context.Context, _, _, database string) (string, error) {
	return d.pg.URL(database), nil
}

func newFeatureStore(name string) *outpostv1.FeatureStore {
	return &outpostv1.FeatureStore{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Generation: 1},
		Spec: outpostv1.FeatureStoreSpec{
			Instance: outpostv1.LocalObjectReference{Name: "example"}, Database: "features", Dimensions: 4,
			Index:    outpostv1.VectorIndex{Type: "hnsw", HNSW: &outpostv1.HNSWParameters{M: 16, EfConstruction: 64}},
			Features: []outpostv1.Feature{{Name: "category", Type: "text"}},
		},
	}
}

func featureStoreDB(t *testing.T) *harness.Postgres {
	t.Helper()
	pg := harness.StartPostgres(t)
	if _, err := pg.Connect(t, "postgres").Exec(context.Background(), "CREATE DATABASE features"); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.Connect(t, "features").Exec(context.Background(), "CREATE EXTENSION vector"); err != nil {
		t.Fatal(err)
	}
	return pg
}

// A rebuild CONCURRENTLY after the index parameters change publishes its
// progress in the status while it runs, and says whether HNSW is built
// serially (pgvector older than 0.8.2, CVE-2026-3172) or in parallel. The
// test holds a writer's lock on the table, so the build waits in a known
// phase until the test lets it go.
func TestFeatureStoreIndexRebuildPublishesProgressAndTheSerialBuildRule(t *testing.T) {
	pg := featureStoreDB(t)
	ctx := context.Background()
	r := &FeatureStoreReconciler{Databases: oneDatabase{pg}, Events: &events{}}
	fs := newFeatureStore("items")
	r.Reconcile(ctx, fs)
	pgvector := harness.PgvectorVersion(t)
	if fs.Status.Phase != "Ready" || fs.Status.PgvectorVersion != pgvector {
		t.Fatalf("status %+v: want Ready on pgvector %s", fs.Status, pgvector)
	}
	serial := !vectorstore.ParallelHNSWBuildSafe(pgvector)
	idx := meta.FindStatusCondition(fs.Status.Conditions, ConditionIndexReady)
	if serial && (idx == nil || idx.Reason != ReasonSerialHNSWBuild || !strings.Contains(idx.Message, "CVE-2026-3172")) {
		t.Errorf("IndexReady = %+v: want reason %s naming CVE-2026-3172", idx, ReasonSerialHNSWBuild)
	}
	if !serial && (idx == nil || idx.Reason != ReasonParallelHNSWBuild) {
		t.Errorf("IndexReady = %+v: want reason %s on pgvector %s", idx, ReasonParallelHNSWBuild, pgvector)
	}

	pool, err := vectorstore.Connect(ctx, pg.URL("features"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store, err := vectorstore.Open(ctx, pool, "items")
	if err != nil {
		t.Fatal(err)
	}
	var csv strings.Builder
	csv.WriteString("key,embedding,category\n")
	for i := range 200 {
		fmt.Fprintf(&csv, "k%03d,\"[1,2,3,%d]\",c\n", i, i%10)
	}
	if _, err := store.Ingest(ctx, vectorstore.NewCSVReader(strings.NewReader(csv.String()), "rows.csv"), vectorstore.IngestOptions{}); err != nil {
		t.Fatal(err)
	}

	writer := pg.Connect(t, "features")
	tx, err := writer.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "LOCK TABLE items IN ROW EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}

	fs.Spec.Index.HNSW.M, fs.Generation = 8, 2
	published := make(chan outpostv1.FeatureStoreStatus, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.ReconcileWithProgress(ctx, fs, func(fs *outpostv1.FeatureStore) {
			select {
			case published <- *fs.Status.DeepCopy():
			default:
			}
		})
	}()
	var during outpostv1.FeatureStoreStatus
	select {
	case during = <-published:
	case <-time.After(2 * time.Minute):
		t.Fatal("no progress published while the rebuild waited for the writer")
	}
	b := during.IndexBuild
	if during.IndexState != vectorstore.IndexBuilding || b == nil || !b.Concurrently || b.Serial != serial ||
		b.Index != "items_embedding_idx_new" || !strings.Contains(b.Phase, "waiting for writers") {
		t.Errorf("published status %+v, build %+v: want building items_embedding_idx_new concurrently (serial: %v), waiting for writers", during, b, serial)
	}
	st, err := store.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.IndexState != vectorstore.IndexBuilding || !strings.Contains(st.BuildPhase, "waiting for writers") {
		t.Errorf("stats during the rebuild: state %s, phase %q; want building, waiting for writers", st.IndexState, st.BuildPhase)
	}

	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	<-done
	if fs.Status.IndexBuild != nil || fs.Status.IndexState != vectorstore.IndexValid || fs.Status.Phase != "Ready" {
		t.Errorf("after the rebuild: status %+v, want Ready with a valid index and no build", fs.Status)
	}
	var def string
	if err := pool.QueryRow(ctx, "SELECT pg_get_indexdef('items_embedding_idx'::regclass)").Scan(&def); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(def, "m='8'") {
		t.Errorf("index after the rebuild: %s, want m=8", def)
	}
}

// Deleting a FeatureStore keeps its tables under deletionPolicy Retain (and
// a new FeatureStore of the same name takes them up, rows and all), and
// drops them under Delete.
func TestFeatureStoreDeletionPolicy(t *testing.T) {
	pg := featureStoreDB(t)
	ctx := context.Background()
	r := &FeatureStoreReconciler{Databases: oneDatabase{pg}, Events: &events{}}
	pool, err := vectorstore.Connect(ctx, pg.URL("features"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	relations := func(name string) int {
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_class WHERE relname IN ($1::text, $1::text || '_past', $1::text || '_history')", name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, policy := range []outpostv1.DeletionPolicy{"", outpostv1.DeletionRetain, outpostv1.DeletionDelete} {
		name := "items_" + strings.ToLower(string(policy))
		fs := newFeatureStore(name)
		fs.Spec.DeletionPolicy = policy
		if r.Reconcile(ctx, fs); fs.Status.Phase != "Ready" {
			t.Fatalf("%s: status %+v", name, fs.Status)
		}
		store, err := vectorstore.Open(ctx, pool, name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Ingest(ctx, vectorstore.NewCSVReader(strings.NewReader("key,embedding\na,\"[1,2,3,4]\"\n"), "a.csv"), vectorstore.IngestOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := r.Delete(ctx, fs); err != nil {
			t.Fatalf("%s: delete: %v", name, err)
		}
		if policy == outpostv1.DeletionDelete {
			if n := relations(name); n != 0 {
				t.Errorf("%s: %d of its tables and view left after deletion, want none", name, n)
			}
			if _, err := vectorstore.Open(ctx, pool, name); !errors.Is(err, vectorstore.ErrNotFound) {
				t.Errorf("%s: open after deletion: %v, want ErrNotFound", name, err)
			}
			continue
		}
		if n := relations(name); n != 3 {
			t.Errorf("%s: %d of its tables and view left after deletion, want all 3", name, n)
		}
		again := newFeatureStore(name)
		if r.Reconcile(ctx, again); again.Status.Phase != "Ready" || again.Status.Rows != 1 {
			t.Errorf("%s: recreated store: status %+v, want Ready with the retained row", name, again.Status)
		}
	}
}
