package v1alpha1_test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
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

const validInstance = `
apiVersion: outpost.dev/v1alpha1
kind: PostgresInstance
metadata:
  name: %NAME%
  namespace: default
spec:
  resources:
    cpu: "2"
    memory: 4Gi
  storage:
    size: 20Gi
  extensions: [vector, pg_trgm]
  parameters:
    work_mem: 64MB
  backup:
    objectStore: {name: site-minio}
    schedule: "0 3 * * *"
    retention: {recoveryWindow: 7d}
`

const validFeatureStore = `
apiVersion: outpost.dev/v1alpha1
kind: FeatureStore
metadata:
  name: %NAME%
  namespace: default
spec:
  instance: {name: main}
  database: features
  dimensions: 768
  index: {type: hnsw, hnsw: {m: 16}}
  features:
  - {name: category, type: text}
  - {name: price, type: double}
`

const validObjectStore = `
apiVersion: outpost.dev/v1alpha1
kind: ObjectStore
metadata:
  name: %NAME%
  namespace: default
spec:
  endpoint: https://minio.site.local:9000
  bucket: outpost-backups
  credentials: {secret: {name: minio-creds}}
`

const validDataController = `
apiVersion: outpost.dev/v1alpha1
kind: DataController
metadata:
  name: %NAME%
  namespace: default
spec:
  site: {name: plant-7, labels: {costCentre: cc-42}}
  connectivity:
    mode: direct
    hub: {url: "https://hub.example.com"}
`

// edit returns a manifest with the first occurrence of old replaced.
func edit(t *testing.T, manifest, old, new string) string {
	t.Helper()
	if !strings.Contains(manifest, old) {
		t.Fatalf("test bug: %q not in manifest", old)
	}
	return strings.Replace(manifest, old, new, 1)
}

func TestAdmissionRejectsBadSpecsNamingTheField(t *testing.T) {
	api := harness.StartAPIServer(t)

	cases := []struct {
		name     string
		manifest string
		// wantInMessage are substrings of what kubectl prints, the first
		// being the field path.
		wantInMessage []string
	}{
		{"cpu zero", edit(t, validInstance, `cpu: "2"`, `cpu: "0"`), []string{"spec.resources.cpu", "must be greater than 0"}},
		{"cpu not a quantity", edit(t, validInstance, `cpu: "2"`, `cpu: "two"`), []string{"spec.resources.cpu"}},
		{"memory too small", edit(t, validInstance, `memory: 4Gi`, `memory: 64Mi`), []string{"spec.resources.memory", "at least 256Mi"}},
		{"unknown extension", edit(t, validInstance, `[vector, pg_trgm]`, `[vector, plpython3u]`), []string{"spec.extensions[1]", "plpython3u"}},
		{"managed parameter", edit(t, validInstance, `work_mem: 64MB`, `port: "6543"`), []string{"spec.parameters", "managed by Outpost"}},
		{"unsupported version", edit(t, validInstance, `spec:`, "spec:\n  version: 14"), []string{"spec.version"}},
		{"unknown deletion policy", edit(t, validInstance, `spec:`, "spec:\n  deletionPolicy: Purge"), []string{"spec.deletionPolicy"}},
		{"bad cron schedule", edit(t, validInstance, `"0 3 * * *"`, `"every night"`), []string{"spec.backup.schedule", "cron"}},
		{"retention window and count", edit(t, validInstance, `{recoveryWindow: 7d}`, `{recoveryWindow: 7d, count: 3}`), []string{"spec.backup.retention", "exactly one"}},
		{"retention window unit", edit(t, validInstance, `{recoveryWindow: 7d}`, `{recoveryWindow: 7 days}`), []string{"spec.backup.retention.recoveryWindow"}},
		{"two bootstraps", edit(t, validInstance, `spec:`, "spec:\n  bootstrap:\n    initdb: {}\n    recovery: {source: old, objectStore: {name: s}}"), []string{"spec.bootstrap", "at most one"}},
		{"missing storage", edit(t, validInstance, "  storage:\n    size: 20Gi\n", ""), []string{"spec.storage", "Required"}},
		{"zero dimensions", edit(t, validFeatureStore, `dimensions: 768`, `dimensions: 0`), []string{"spec.dimensions"}},
		{"too many dimensions for an index", edit(t, validFeatureStore, `dimensions: 768`, `dimensions: 5000`), []string{"spec.dimensions", "4000"}},
		{"unknown distance", edit(t, validFeatureStore, `dimensions: 768`, "dimensions: 768\n  distance: dot"), []string{"spec.distance"}},
		{"hnsw m out of range", edit(t, validFeatureStore, `{m: 16}`, `{m: 1}`), []string{"spec.index.hnsw.m"}},
		{"ivfflat parameters on hnsw", edit(t, validFeatureStore, `hnsw: {m: 16}`, `ivfflat: {lists: 10}`), []string{"spec.index.ivfflat", "need type ivfflat"}},
		{"reserved feature name", edit(t, validFeatureStore, `{name: price, type: double}`, `{name: embedding, type: double}`), []string{"spec.features[1].name"}},
		{"unknown feature type", edit(t, validFeatureStore, `type: double`, `type: float`), []string{"spec.features[1].type"}},
		{"endpoint not a URL", edit(t, validObjectStore, `https://minio.site.local:9000`, `minio.site.local:9000`), []string{"spec.endpoint", "URL"}},
		{"no credentials", edit(t, validObjectStore, `{secret: {name: minio-creds}}`, `{}`), []string{"spec.credentials", "exactly one"}},
		{"bad bucket name", edit(t, validObjectStore, `outpost-backups`, `Outpost_Backups`), []string{"spec.bucket"}},
		{"direct mode without hub", edit(t, validDataController, "\n    hub: {url: \"https://hub.example.com\"}", ""), []string{"spec.connectivity.hub", "required when mode is direct"}},
		{"unknown connectivity mode", edit(t, validDataController, `mode: direct`, `mode: offline`), []string{"spec.connectivity.mode"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			manifest := strings.ReplaceAll(tc.manifest, "%NAME%", "bad-"+string(rune('a'+i)))
			out, err := kubectl(t, api, manifest, "apply", "-f", "-")
			if err == nil {
				t.Fatalf("kubectl apply accepted the bad spec:\n%s", out)
			}
			for _, want := range tc.wantInMessage {
				if !strings.Contains(out, want) {
					t.Errorf("kubectl apply's message does not mention %q:\n%s", want, out)
				}
			}
		})
	}

	t.Run("valid specs are accepted", func(t *testing.T) {
		for _, m := range []string{validInstance, validFeatureStore, validObjectStore, validDataController} {
			if out, err := kubectl(t, api, strings.ReplaceAll(m, "%NAME%", "good"), "apply", "-f", "-"); err != nil {
				t.Errorf("kubectl apply rejected a valid spec: %v\n%s", err, out)
			}
		}
	})
}

func TestAdmissionRejectsChangesToImmutableFields(t *testing.T) {
	api := harness.StartAPIServer(t)
	apply := func(manifest string) (string, error) {
		return kubectl(t, api, strings.ReplaceAll(manifest, "%NAME%", "immutable"), "apply", "-f", "-")
	}
	if out, err := apply(validFeatureStore); err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	out, err := apply(edit(t, validFeatureStore, `dimensions: 768`, `dimensions: 1024`))
	if err == nil || !strings.Contains(out, "spec.dimensions") || !strings.Contains(out, "cannot change") {
		t.Errorf("changing dimensions: err=%v, want a message naming spec.dimensions:\n%s", err, out)
	}

	if out, err := apply(validInstance); err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	out, err = apply(edit(t, validInstance, `spec:`, "spec:\n  bootstrap:\n    initdb: {database: other}"))
	if err == nil || !strings.Contains(out, "spec.bootstrap") || !strings.Contains(out, "cannot change") {
		t.Errorf("changing bootstrap: err=%v, want a message naming spec.bootstrap:\n%s", err, out)
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
