package cluster

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A FeatureStore applied with kubectl gets its tables in the instance
// pod's database: the controller reached the pod, and the application
// role can use them with plain SQL.
func TestAppliedFeatureStoreCreatesItsTablesInThePod(t *testing.T) {
	explainOnFailure(t)
	applyInstance(t)
	kubectl(t, `apiVersion: outpost.dev/v1alpha1
kind: FeatureStore
metadata: {name: products, namespace: apps}
spec:
  instance: {name: vec}
  database: features
  dimensions: 3
  features: [{name: colour, type: text}]
`, "apply", "-f", "-")
	waitFor(t, 2*time.Minute, "featurestore/products Ready", func() (bool, string) {
		out, _ := tryKubectl(t, "", "get", "featurestore", "-n", appsNamespace, "products")
		return strings.Contains(out, "Ready"), out + "\n" + jsonpath(t, appsNamespace, "featurestore/products", "{.status.conditions}")
	})
	table := jsonpath(t, appsNamespace, "featurestore/products", "{.status.table}")
	if table == "" {
		t.Fatal("featurestore/products is Ready but names no table")
	}

	conn := connectApp(t, appsNamespace, instanceName, "features")
	ctx := context.Background()
	var columns string
	if err := conn.QueryRow(ctx, `SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod), ',' ORDER BY attnum)
FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`, table).Scan(&columns); err != nil {
		t.Fatalf("columns of %s in database features: %v", table, err)
	}
	for _, want := range []string{"colour:text", "vector(3)"} {
		if !strings.Contains(columns, want) {
			t.Errorf("table %s has columns %s, missing %s", table, columns, want)
		}
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Errorf("the application role cannot read %s: %v", table, err)
	}
}
