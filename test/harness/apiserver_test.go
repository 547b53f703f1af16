package harness_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outpostdata/outpost/test/harness"
)

func TestAPIServerServesEstablishedOutpostCRDs(t *testing.T) {
	api := harness.StartAPIServer(t)
	cs, err := apiextensionsclient.NewForConfig(api.Config)
	if err != nil {
		t.Fatal(err)
	}
	crds, err := cs.ApiextensionsV1().CustomResourceDefinitions().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	established := map[string]bool{}
	for _, crd := range crds.Items {
		for _, c := range crd.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				established[crd.Name] = true
			}
		}
	}
	for _, name := range []string{
		"datacontrollers.outpost.dev",
		"postgresinstances.outpost.dev",
		"featurestores.outpost.dev",
		"objectstores.outpost.dev",
		"backups.outpost.dev",
	} {
		if !established[name] {
			t.Errorf("CRD %s is not established; have %v", name, established)
		}
	}

	// A user's first look: kubectl knows the short name and prints our columns.
	out, err := exec.Command(harness.SystemBinary(t, "kubectl"), "--kubeconfig", api.Kubeconfig, "get", "pgi", "-A").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl get pgi: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "No resources found") {
		t.Errorf("kubectl get pgi on an empty cluster printed:\n%s", out)
	}
}
