package v1alpha1_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/test/fixtures"
	"github.com/outpostdata/outpost/test/harness"
)

// kubectl runs kubectl against the test apiserver with a manifest on stdin.
func kubectl(t *testing.T, api *harness.APIServer, manifest string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(harness.SystemBinary(t, "kubectl"), append([]string{"--kubeconfig", api.Kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(manifest)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func TestAdmissionRejectsBadSpecsNamingTheField(t *testing.T) {
	api := harness.StartAPIServer(t)

	for i, tc := range fixtures.BadSpecs {
		t.Run(tc.Name, func(t *testing.T) {
			manifest := fixtures.Named(tc.Manifest, fmt.Sprintf("bad-%d", i))
			out, err := kubectl(t, api, manifest, "apply", "-f", "-")
			if err == nil {
				t.Fatalf("kubectl apply accepted the bad spec:\n%s", out)
			}
			for _, want := range append([]string{tc.Field}, tc.WantInMessage...) {
				if !strings.Contains(out, want) {
					t.Errorf("kubectl apply's message does not mention %q:\n%s", want, out)
				}
			}
		})
	}

	t.Run("valid specs are accepted", func(t *testing.T) {
		for _, m := range fixtures.Valid {
			if out, err := kubectl(t, api, fixtures.Named(m, "good"), "apply", "-f", "-"); err != nil {
				t.Errorf("kubectl apply rejected a valid spec: %v\n%s", err, out)
			}
		}
	})
}

func TestAdmissionRejectsChangesToImmutableFields(t *testing.T) {
	api := harness.StartAPIServer(t)
	for i, tc := range fixtures.ImmutableChanges {
		t.Run(tc.Name, func(t *testing.T) {
			name := fmt.Sprintf("immutable-%d", i)
			if out, err := kubectl(t, api, fixtures.Named(tc.From, name), "apply", "-f", "-"); err != nil {
				t.Fatalf("create: %v\n%s", err, out)
			}
			out, err := kubectl(t, api, fixtures.Named(tc.To, name), "apply", "-f", "-")
			if err == nil {
				t.Fatalf("kubectl apply accepted the change:\n%s", out)
			}
			for _, want := range append([]string{tc.Field}, tc.WantInMessage...) {
				if !strings.Contains(out, want) {
					t.Errorf("kubectl apply's message does not mention %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestAdmissionErrorsCarryFieldCausesForGoClients(t *testing.T) {
	api := harness.StartAPIServer(t)
	pgi := &outpostv1.PostgresInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "zero-cpu", Namespace: "default"},
		Spec: outpostv1.PostgresInstanceSpec{
			Resources: outpostv1.InstanceResources{CPU: resource.MustParse("0"), Memory: resource.MustParse("1Gi")},
			Storage:   outpostv1.InstanceStorage{Size: resource.MustParse("10Gi")},
		},
	}
	err := api.Client.Create(context.Background(), pgi)
	var status *apierrors.StatusError
	if !errors.As(err, &status) || !apierrors.IsInvalid(err) {
		t.Fatalf("create with cpu 0: %v, want an Invalid status error", err)
	}
	var fields []string
	for _, cause := range status.ErrStatus.Details.Causes {
		fields = append(fields, cause.Field)
	}
	if len(fields) != 1 || fields[0] != "spec.resources.cpu" {
		t.Errorf("causes name fields %v, want [spec.resources.cpu]", fields)
	}
}

func TestAdmissionAppliesDefaults(t *testing.T) {
	api := harness.StartAPIServer(t)
	ctx := context.Background()
	pgi := &outpostv1.PostgresInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "defaults", Namespace: "default"},
		Spec: outpostv1.PostgresInstanceSpec{
			Resources: outpostv1.InstanceResources{CPU: resource.MustParse("500m"), Memory: resource.MustParse("1Gi")},
			Storage:   outpostv1.InstanceStorage{Size: resource.MustParse("10Gi")},
		},
	}
	if err := api.Client.Create(ctx, pgi); err != nil {
		t.Fatal(err)
	}
	var got outpostv1.PostgresInstance
	if err := api.Client.Get(ctx, client.ObjectKeyFromObject(pgi), &got); err != nil {
		t.Fatal(err)
	}
	if got.Spec.Version != 15 {
		t.Errorf("version = %d, want default 15", got.Spec.Version)
	}
	if got.Spec.DeletionPolicy != outpostv1.DeletionRetain {
		t.Errorf("deletionPolicy = %q, want default Retain", got.Spec.DeletionPolicy)
	}
	if got.Spec.Bootstrap.InitDB == nil || got.Spec.Bootstrap.InitDB.Database != "app" || got.Spec.Bootstrap.InitDB.Owner != "app" {
		t.Errorf("bootstrap = %+v, want initdb of database app owned by app", got.Spec.Bootstrap)
	}

	fs := &outpostv1.FeatureStore{
		ObjectMeta: metav1.ObjectMeta{Name: "defaults", Namespace: "default"},
		Spec:       outpostv1.FeatureStoreSpec{Instance: outpostv1.LocalObjectReference{Name: "defaults"}, Database: "features", Dimensions: 3},
	}
	if err := api.Client.Create(ctx, fs); err != nil {
		t.Fatal(err)
	}
	var gotFS outpostv1.FeatureStore
	if err := api.Client.Get(ctx, client.ObjectKeyFromObject(fs), &gotFS); err != nil {
		t.Fatal(err)
	}
	if gotFS.Spec.VectorType != "vector" || gotFS.Spec.Distance != "cosine" || gotFS.Spec.Index.Type != "hnsw" || gotFS.Spec.History.Retention != "30d" {
		t.Errorf("feature store defaults = %+v", gotFS.Spec)
	}
}
