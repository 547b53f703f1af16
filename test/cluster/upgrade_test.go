package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
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
	// instance, as its metrics say; only then is "nothing changed" news.
	waitFor(t, 2*time.Minute, "the new controller reconciling pgi/keep", func() (bool, string) {
		pods := controllerPods(t, ns)
		if len(strings.Fields(pods)) != 1 || strings.Contains(controllersBefore, pods) {
			return false, "controller pods " + pods
		}
		n, err := reconciled(jsonpath(t, ns, "pod/"+pods, "{.status.podIP}"))
		return n >= 1, fmt.Sprintf("%d successful PostgresInstance reconciles (%v)", n, err)
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

// reconciled reads controller-runtime's count of PostgresInstance
// reconciles, whatever their result (an instance that waits on something
// is requeued), from a controller pod's metrics port, reached from the
// host through the route to the pod network.
func reconciled(podIP string) (int, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + net.JoinHostPort(podIP, "8080") + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	total := 0
	re := regexp.MustCompile(`(?m)^controller_runtime_reconcile_total\{controller="postgresinstance",result="[a-z_]+"\} (\d+)$`)
	for _, m := range re.FindAllSubmatch(b, -1) {
		n, err := strconv.Atoi(string(m[1]))
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

func countRows(t *testing.T, namespace, instance, table string, want int) {
	t.Helper()
	conn := connectApp(t, namespace, instance, "")
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != want {
		t.Errorf("%s/%s: table %s has %d rows (%v), want %d", namespace, instance, table, n, err, want)
	}
}
