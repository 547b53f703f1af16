package cluster

import (
	"strings"
	"testing"
	"time"
)

// A DataController applied with kubectl meters the instance, and `outpost
// usage export --source kubernetes`, run where an operator runs it (in the
// controller's pod, with kubectl exec), writes a month's export that
// verifies against the site's public key, and not against another.
func TestDataControllerMetersAndUsageExportInTheControllerPodVerifies(t *testing.T) {
	explainOnFailure(t)
	applyInstance(t)
	kubectl(t, `apiVersion: outpost.dev/v1alpha1
kind: DataController
metadata: {name: site, namespace: apps}
spec:
  site: {name: plant-7}
  metering: {interval: 1s}
`, "apply", "-f", "-")
	waitFor(t, 2*time.Minute, "dc/site Ready and metering", func() (bool, string) {
		out := jsonpath(t, appsNamespace, "dc/site", `{.status.conditions[?(@.type=="Ready")].status} {.status.signingKeyFingerprint}`)
		return strings.HasPrefix(out, "True SHA256:"), out + " " + jsonpath(t, appsNamespace, "dc/site", "{.status.conditions}")
	})
	fingerprint := jsonpath(t, appsNamespace, "dc/site", "{.status.signingKeyFingerprint}")

	inPod := func(args ...string) (string, error) {
		return tryKubectl(t, "", append([]string{"exec", "-n", releaseNamespace, "deploy/" + fullname(release) + "-controller", "-c", "controller", "--"}, args...)...)
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := inPod(args...)
		if err != nil {
			t.Fatalf("kubectl exec ... %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	key := must("outpost", "usage", "key", "--source", "kubernetes")
	// stdout is the key; stderr, mixed in, says its fingerprint.
	var pub string
	for _, l := range strings.Split(key, "\n") {
		if strings.HasPrefix(l, "ed25519:") {
			pub = l
		}
	}
	if !strings.HasPrefix(pub, "ed25519:") || !strings.Contains(key, fingerprint) {
		t.Fatalf("outpost usage key in the controller pod: %q; want the key whose fingerprint is %s", key, fingerprint)
	}
	if out := must("outpost", "usage", "show", "--source", "kubernetes"); !strings.Contains(out, "Usage of site plant-7") {
		t.Errorf("outpost usage show in the controller pod:\n%s", out)
	}
	const file = "/tmp/usage.outpost-usage"
	must("outpost", "usage", "export", "--source", "kubernetes", "--month", time.Now().UTC().Format("2006-01"), "-o", file)
	if out := must("outpost", "usage", "verify", file, "--public-key", pub); out == "" {
		t.Error("outpost usage verify printed nothing")
	}
	// The control: the same file does not verify against another key.
	other := "ed25519:" + strings.Repeat("A", 43) + "="
	if out, err := inPod("outpost", "usage", "verify", file, "--public-key", other); err == nil {
		t.Errorf("the export verified against a key that is not the site's:\n%s", out)
	}
}
