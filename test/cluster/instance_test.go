package cluster

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// The package's instance, with pgvector, made once by kubectl apply.
const instanceName = "vec"

var (
	instanceOnce     sync.Once
	instanceEndpoint string
)

const instanceManifest = `apiVersion: outpost.dev/v1alpha1
kind: PostgresInstance
metadata: {name: vec, namespace: apps}
spec:
  resources: {cpu: 250m, memory: 512Mi}
  storage: {size: 1Gi}
  extensions: [vector]
`

// applyInstance applies the package's instance once and waits until it is
// Running.
func applyInstance(t *testing.T) string {
	t.Helper()
	installOutpost(t)
	instanceOnce.Do(func() {
		kubectl(t, instanceManifest, "apply", "-f", "-")
	})
	return waitInstanceRunning(t, appsNamespace, instanceName, 3*time.Minute)
}

// kubectl apply → kubectl get pgi shows Running and the endpoint → SQL
// with a pgvector nearest-neighbour query, from the host through the
// Service, as the application with its Secret, verify-full.
func TestAppliedInstanceServesPgvectorThroughItsService(t *testing.T) {
	explainOnFailure(t)
	endpoint := applyInstance(t)
	if endpoint != "vec.apps.svc:5432" {
		t.Errorf("status.endpoint = %q, want vec.apps.svc:5432", endpoint)
	}
	// The chart passed the instance image and its pull policy on to the
	// controller (--instance-image, --instance-image-pull-policy).
	if img := jsonpath(t, appsNamespace, "pod/vec-0", "{.spec.containers[0].image} {.spec.containers[0].imagePullPolicy}"); img != instanceImage+" Never" {
		t.Errorf("the instance pod runs %q, want %s with pull policy Never", img, instanceImage)
	}
	table := kubectl(t, "", "get", "pgi", "-n", appsNamespace)
	if !strings.Contains(table, "Running") || !strings.Contains(table, endpoint) {
		t.Errorf("kubectl get pgi does not show Running and the endpoint:\n%s", table)
	}

	conn := connectApp(t, appsNamespace, instanceName, "")
	ctx := context.Background()
	if _, err := conn.Exec(ctx, `CREATE TABLE items (name text PRIMARY KEY, embedding vector(3));
INSERT INTO items VALUES ('origin', '[0,0,0]'), ('near', '[1,1,1]'), ('middle', '[3,3,3]'), ('far', '[10,10,10]')`); err != nil {
		t.Fatalf("create and fill a vector table: %v", err)
	}
	var nearest string
	if err := conn.QueryRow(ctx, `SELECT name FROM items ORDER BY embedding <-> '[2.9,3,3.1]' LIMIT 1`).Scan(&nearest); err != nil {
		t.Fatalf("kNN query: %v", err)
	}
	if nearest != "middle" {
		t.Errorf("nearest neighbour of [2.9,3,3.1] = %q, want middle", nearest)
	}
	// The connection is TLS, verified: the server's certificate names the
	// Service (pgx would have refused otherwise); show it is encrypted.
	var ssl bool
	if err := conn.QueryRow(ctx, `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl); err != nil || !ssl {
		t.Errorf("the connection is not TLS (ssl=%v, %v)", ssl, err)
	}
}

// Issue 13's first bug: kubelet applies fsGroup to the volume on every
// mount, leaving pgdata group-writable, and PostgreSQL then refused to
// start, forever. Deleting the pod now brings it back Ready with its data
// within 60 s, without a restart of its container.
func TestDeletedInstancePodComesBackReadyWithItsData(t *testing.T) {
	explainOnFailure(t)
	applyInstance(t)
	ctx := context.Background()
	conn := connectApp(t, appsNamespace, instanceName, "")
	if _, err := conn.Exec(ctx, `CREATE TABLE survives (id int PRIMARY KEY, note text);
INSERT INTO survives SELECT g, 'row ' || g FROM generate_series(1, 1000) g`); err != nil {
		t.Fatalf("write rows: %v", err)
	}
	conn.Close(ctx)

	pod := instanceName + "-0"
	oldUID := jsonpath(t, appsNamespace, "pod/"+pod, "{.metadata.uid}")
	begin := time.Now()
	kubectl(t, "", "delete", "pod", "-n", appsNamespace, pod, "--wait=false")
	waitFor(t, 60*time.Second, "pod "+pod+" back and Ready", func() (bool, string) {
		state := jsonpath(t, appsNamespace, "pod/"+pod, `{.metadata.uid} {.status.conditions[?(@.type=="Ready")].status}`)
		f := strings.Fields(state)
		return len(f) == 2 && f[0] != oldUID && f[1] == "True", podState(t, appsNamespace, pod)
	})
	t.Logf("pod %s Ready again %s after its deletion", pod, time.Since(begin).Round(time.Millisecond))
	if r := jsonpath(t, appsNamespace, "pod/"+pod, "{.status.containerStatuses[0].restartCount}"); r != "0" {
		t.Errorf("the new pod's container restarted %s times", r)
	}

	conn = connectApp(t, appsNamespace, instanceName, "")
	var n int
	var last string
	if err := conn.QueryRow(ctx, `SELECT count(*), max(note) FILTER (WHERE id = 1000) FROM survives`).Scan(&n, &last); err != nil {
		t.Fatalf("read the rows back: %v", err)
	}
	if n != 1000 || last != "row 1000" {
		t.Errorf("after the pod came back: %d rows, row 1000 = %q; want 1000 and \"row 1000\"", n, last)
	}
}
