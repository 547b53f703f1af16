package controller

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

// readyReason is the reason of the store's Ready condition and its message.
func readyReason(fs *outpostv1.FeatureStore) (string, string) {
	c := meta.FindStatusCondition(fs.Status.Conditions, outpostv1.ConditionReady)
	if c == nil {
		return "", ""
	}
	return c.Reason, c.Message
}

// A FeatureStore named like an application's table never takes it over:
// it is refused, naming the table, the table keeps its shape, rows and
// owner, and deleting the store under deletionPolicy Delete drops nothing.
func TestFeatureStoreOverAnApplicationTableIsRefusedAndDeletingItDropsNothing(t *testing.T) {
	pg := featureStoreDB(t)
	ctx := context.Background()
	db := pg.Connect(t, "features")
	if _, err := db.Exec(ctx, "CREATE TABLE orders (id int PRIMARY KEY, total numeric); INSERT INTO orders VALUES (1, 9.5), (2, 12)"); err != nil {
		t.Fatal(err)
	}
	shape := func() string {
		var s string
		err := db.QueryRow(ctx, `SELECT string_agg(attname, ',' ORDER BY attnum) || ' rows=' || (SELECT count(*) FROM orders) || ' owner=' || pg_get_userbyid((SELECT relowner FROM pg_class WHERE oid = 'orders'::regclass))
FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attnum > 0 AND NOT attisdropped`).Scan(&s)
		if err != nil {
			t.Fatalf("the application's table orders: %v", err)
		}
		return s
	}
	before := shape()

	r := &FeatureStoreReconciler{Databases: oneDatabase{pg}, Events: &events{}}
	fs := newFeatureStore("orders")
	fs.UID = types.UID("3f6c1d9e-orders")
	fs.Spec.DeletionPolicy = outpostv1.DeletionDelete
	r.Reconcile(ctx, fs)
	reason, msg := readyReason(fs)
	if fs.Status.Phase != "Failed" || reason != ReasonTablesNotOwned || !strings.Contains(msg, "public.orders") {
		t.Errorf("status %s, Ready %s: %q; want Failed, TablesNotOwned naming public.orders", fs.Status.Phase, reason, msg)
	}
	if got := shape(); got != before {
		t.Errorf("the application's table changed: %s, was %s", got, before)
	}

	if err := r.Delete(ctx, fs); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if got := shape(); got != before {
		t.Errorf("after deleting the store under deletionPolicy Delete the table is %s, was %s", got, before)
	}

	// The control: a store of another name in the same database is made,
	// recorded with its uid, and dropped by the same deletion.
	own := newFeatureStore("order_vectors")
	own.UID = types.UID("7a0e-order-vectors")
	own.Spec.DeletionPolicy = outpostv1.DeletionDelete
	if r.Reconcile(ctx, own); own.Status.Phase != "Ready" {
		t.Fatalf("status %+v", own.Status)
	}
	var uid string
	if err := db.QueryRow(ctx, "SELECT store_uid FROM outpost.feature_store_tables WHERE relation = 'order_vectors'").Scan(&uid); err != nil || uid != "7a0e-order-vectors" {
		t.Errorf("registry uid of order_vectors = %q, %v", uid, err)
	}
	if err := r.Delete(ctx, own); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := db.QueryRow(ctx, "SELECT count(*) FROM pg_class WHERE relname LIKE 'order_vectors%' AND relkind IN ('r', 'v')").Scan(&left); err != nil || left != 0 {
		t.Errorf("%d relations of the deleted store order_vectors left (%v), want none", left, err)
	}
}

// "a-b" and "a.b" map to the same tables: the second is refused, naming
// both, and deleting it leaves the first store's tables and rows alone.
func TestFeatureStoresWhoseTablesCollideAreRefusedNamingBoth(t *testing.T) {
	pg := featureStoreDB(t)
	ctx := context.Background()
	r := &FeatureStoreReconciler{Databases: oneDatabase{pg}, Events: &events{}}
	first := newFeatureStore("a-b")
	if r.Reconcile(ctx, first); first.Status.Phase != "Ready" {
		t.Fatalf("a-b: status %+v", first.Status)
	}
	db := pg.Connect(t, "features")
	if _, err := db.Exec(ctx, "INSERT INTO a_b (key, embedding, event_time) VALUES ('k', '[1,2,3,4]', now())"); err != nil {
		t.Fatal(err)
	}

	second := newFeatureStore("a.b")
	second.Spec.DeletionPolicy = outpostv1.DeletionDelete
	second.Spec.Features = append(second.Spec.Features, outpostv1.Feature{Name: "extra", Type: "text"})
	r.Reconcile(ctx, second)
	reason, msg := readyReason(second)
	if second.Status.Phase != "Failed" || reason != ReasonTablesNotOwned || !strings.Contains(msg, `"a.b"`) || !strings.Contains(msg, `"a-b"`) {
		t.Errorf("a.b: status %s, Ready %s: %q; want Failed, TablesNotOwned naming a.b and a-b", second.Status.Phase, reason, msg)
	}
	var extra bool
	if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'a_b'::regclass AND attname = 'extra')").Scan(&extra); err != nil || extra {
		t.Errorf("a.b altered a-b's table (column extra added: %v, %v)", extra, err)
	}
	if err := r.Delete(ctx, second); err != nil {
		t.Fatal(err)
	}
	again := newFeatureStore("a-b")
	if r.Reconcile(ctx, again); again.Status.Phase != "Ready" || again.Status.Rows != 1 {
		t.Errorf("a-b after a.b was deleted: status %+v, want Ready with its row", again.Status)
	}
}

// Stores made before the registry existed are still Outpost's: they are
// recognised, recorded, and dropped under deletionPolicy Delete.
func TestFeatureStoreMadeBeforeTheRegistryIsStillOwned(t *testing.T) {
	pg := featureStoreDB(t)
	ctx := context.Background()
	r := &FeatureStoreReconciler{Databases: oneDatabase{pg}, Events: &events{}}
	fs := newFeatureStore("older")
	fs.Spec.DeletionPolicy = outpostv1.DeletionDelete
	if r.Reconcile(ctx, fs); fs.Status.Phase != "Ready" {
		t.Fatalf("status %+v", fs.Status)
	}
	db := pg.Connect(t, "features")
	if _, err := db.Exec(ctx, "DROP TABLE outpost.feature_store_tables"); err != nil {
		t.Fatal(err)
	}
	if r.Reconcile(ctx, fs); fs.Status.Phase != "Ready" {
		t.Fatalf("a store made before the registry: status %+v", fs.Status)
	}
	var n int
	if err := db.QueryRow(ctx, "SELECT count(*) FROM outpost.feature_store_tables WHERE store = 'older'").Scan(&n); err != nil || n != 3 {
		t.Errorf("%d relations recorded for older (%v), want 3", n, err)
	}
	if err := r.Delete(ctx, fs); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(ctx, "SELECT count(*) FROM pg_class WHERE relname LIKE 'older%' AND relkind IN ('r', 'v')").Scan(&n); err != nil || n != 0 {
		t.Errorf("%d relations of older left after Delete (%v)", n, err)
	}
}
