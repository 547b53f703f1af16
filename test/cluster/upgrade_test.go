package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/outpostdata/outpost/bundle/image"
)

// `helm upgrade` to a new controller image replaces the controller and
// leaves the instances alone: the instance pod is the same pod (same UID),
// never restarted, its StatefulSet untouched, and it serves its data
// throughout. `helm uninstall` then removes the release but leaves the
// PersistentVolumeClaims and the data. The test has a release of its own,
// so uninstalling it leaves the package's release to the other tests.
func TestHelmUpgradeKeepsInstancesAndUninstallKeepsData(t *testing.T) {
	explainOnFailure(t)
	const rel, ns = "upgrade", "upgrade"
	full := fullname(rel)
	next := image.ControllerRepository + ":" + nextTag
	if err := cl.TagImage(controllerImage, next); err != nil {
		t.Fatal(err)
	}
	helm(t, helmInstallArgs(rel, ns, imageTag, "--set", "replicas=1", "--set", "leaderElection=true")...)
	kubectl(t, strings.ReplaceAll(instanceManifest, "{name: vec, namespace: apps}", "{name: keep, namespace: upgrade}"), "apply", "-f", "-")
	waitInstanceRunning(t, ns, "keep", 3*time.Minute)
	ctx := context.Background()
	conn := connectApp(t, ns, "keep", "")
	if _, err := conn.Exec(ctx, `CREATE TABLE kept AS SELECT g AS id FROM generate_series(1, 500) g`); err != nil {
		t.Fatalf("write rows: %v", err)
	}
	conn.Close(ctx)

	podBefore := jsonpath(t, ns, "pod/keep-0", "{.metadata.uid} {.status.containerStatuses[0].restartCount}")
	stsBefore := jsonpath(t, ns, "statefulset/keep", "{.metadata.generation}")
	controllersBefore := controllerPods(t, ns)

	helm(t, "upgrade", rel, chartPath(), "--namespace", ns, "--reuse-values", "--set", "image.tag="+nextTag, "--wait", "--timeout", "5m")
	if img := jsonpath(t, ns, "deployment/"+full+"-controller", "{.spec.template.spec.containers[0].image}"); img != next {
		t.Fatalf("after helm upgrade the controller runs %q, want %q", img, next)
	}
	// The new controller pod is Ready (helm --wait) and has reconciled the
	// instance: its status was written by the new pod.
	waitFor(t, 2*time.Minute, "the new controller reconciling pgi/keep", func() (bool, string) {
		pods := controllerPods(t, ns)
		if len(pods) != 1 || strings.Contains(controllersBefore, pods) {
			return false, "controller pods " + pods
		}
		log, _ := tryKubectl(t, "", "logs", "-n", ns, pods)
		return strings.Contains(log, `"keep"`), "log of " + pods + ":\n" + log
	})
	if after := jsonpath(t, ns, "pod/keep-0", "{.metadata.uid} {.status.containerStatuses[0].restartCount}"); after != podBefore {
		t.Errorf("instance pod uid and restarts: %q before helm upgrade, %q after", podBefore, after)
	}
	if after := jsonpath(t, ns, "statefulset/keep", "{.metadata.generation}"); after != stsBefore {
		t.Errorf("helm upgrade changed the instance's StatefulSet: generation %s → %s", stsBefore, after)
	}
	countRows(t, ns, "keep", "kept", 500)

	helm(t, "uninstall", rel, "--namespace", ns, "--wait", "--timeout", "5m")
	if out, err := tryKubectl(t, "", "get", "deployment", "-n", ns, full+"-controller"); err == nil {
		t.Errorf("the controller Deployment is still there after helm uninstall:\n%s", out)
	}
	pvcs := kubectl(t, "", "get", "pvc", "-n", ns, "-o", "jsonpath={.items[*].metadata.name}")
	for _, want := range []string{"data-" + full + "-controldb-0", "data-keep-0"} {
		if !strings.Contains(pvcs, want) {
			t.Errorf("PVC %s is gone after helm uninstall (PVCs: %s)", want, pvcs)
		}
	}
	countRows(t, ns, "keep", "kept", 500)
}

// controllerPods names a release's controller pods, space-separated.
func controllerPods(t *testing.T, namespace string) string {
	return jsonpath(t, namespace, "pods", `{.items[?(@.metadata.labels.app\.kubernetes\.io/component=="controller")].metadata.name}`)
}

func countRows(t *testing.T, namespace, instance, table string, want int) {
	t.Helper()
	conn := connectApp(t, namespace, instance, "")
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != want {
		t.Errorf("%s/%s: table %s has %d rows (%v), want %d", namespace, instance, table, n, err, want)
	}
}
