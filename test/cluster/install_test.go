package cluster

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpostdata/outpost/bundle/image"
	"github.com/outpostdata/outpost/test/harness"
)

// The package's Helm release: the controller in releaseNamespace,
// managing instances in appsNamespace.
const (
	release          = "outpost"
	releaseNamespace = "outpost"
	appsNamespace    = "apps"
)

var (
	installOnce sync.Once
	installErr  string
	installTook time.Duration
)

// fullname is the chart's prefix of a release's objects.
func fullname(release string) string {
	if strings.Contains(release, "outpost") {
		return release
	}
	return release + "-outpost"
}

// helmInstallArgs installs charts/outpost as a user with the images in
// their node's containerd would: the images by name and tag, pulled never.
func helmInstallArgs(name, namespace, controllerTag string, extra ...string) []string {
	args := []string{"install", name, chartPath(),
		"--namespace", namespace, "--create-namespace",
		"--set", "image.repository=" + image.ControllerRepository,
		"--set", "image.tag=" + controllerTag,
		"--set", "image.pullPolicy=Never",
		"--set", "instanceImage.repository=" + image.InstanceRepository,
		"--set", "instanceImage.tag=" + imageTag,
		"--set", "instanceImage.pullPolicy=Never",
		"--wait", "--timeout", "3m",
	}
	return append(args, extra...)
}

// chartPath is the chart from the run's bundle (bundle_test.go).
func chartPath() string { return chartDir }

// installOutpost installs the package's release once, for every test that
// needs a controller.
func installOutpost(t *testing.T) {
	t.Helper()
	installOnce.Do(func() {
		if out, err := tryKubectl(t, "", "create", "namespace", appsNamespace); err != nil {
			installErr = out
			return
		}
		bin := harness.Tool(t, "helm")
		begin := time.Now()
		out, err := run(t, "", bin, append([]string{"--kubeconfig", cl.Kubeconfig},
			helmInstallArgs(release, releaseNamespace, imageTag, "--set", "watchNamespaces[0]="+appsNamespace)...)...)
		if err != nil {
			installErr = "helm install: " + err.Error() + "\n" + out
		}
		installTook = time.Since(begin)
	})
	if installErr != "" {
		t.Fatalf("the package's release is not installed: %s", installErr)
	}
}

// Issue 13's second bug: the controller exited while controldb was still
// starting, so every install crash-looped a few times. On a real kubelet,
// `helm install --wait` brings the controllers and controldb to Ready, and
// no controller container was ever restarted.
func TestHelmInstallBringsControllerAndControldbReady(t *testing.T) {
	explainOnFailure(t)
	installOutpost(t)
	t.Logf("helm install --wait took %s", installTook.Round(time.Millisecond))

	deploy := kubectl(t, "", "get", "deployment", "-n", releaseNamespace, fullname(release)+"-controller", "-o",
		"jsonpath={.spec.replicas} {.status.readyReplicas}")
	if f := strings.Fields(deploy); len(f) != 2 || f[0] != f[1] {
		t.Errorf("controller Deployment replicas and ready replicas: %q", deploy)
	}
	sts := kubectl(t, "", "get", "statefulset", "-n", releaseNamespace, fullname(release)+"-controldb", "-o", "jsonpath={.status.readyReplicas}")
	if sts != "1" {
		t.Errorf("controldb StatefulSet ready replicas: %q, want 1", sts)
	}
	restarts := kubectl(t, "", "get", "pods", "-n", releaseNamespace, "-l", "app.kubernetes.io/component=controller",
		"-o", `jsonpath={range .items[*]}{.metadata.name}={.status.containerStatuses[0].restartCount}{"\n"}{end}`)
	lines := strings.Fields(restarts)
	if len(lines) == 0 {
		t.Fatalf("no controller pods")
	}
	for _, l := range lines {
		if !strings.HasSuffix(l, "=0") {
			t.Errorf("controller pod restarted: %s\nits previous log:\n%s", l, previousLog(t, releaseNamespace, strings.Split(l, "=")[0]))
		}
	}
	// The controller made controldb's Secret, and controldb serves.
	if v := jsonpath(t, releaseNamespace, "secret/"+fullname(release)+"-controldb", "{.data.password}"); v == "" {
		t.Errorf("secret %s-controldb has no password", release)
	}
}

func previousLog(t *testing.T, namespace, pod string) string {
	out, _ := tryKubectl(t, "", "logs", "-n", namespace, pod, "--previous", "--tail=30")
	return out
}
