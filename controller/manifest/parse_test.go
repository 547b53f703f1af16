package manifest_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/manifest"
	"github.com/outpostdata/outpost/test/fixtures"
)

// writeManifest writes content to dir/manifests/name and returns its path.
func writeManifest(t *testing.T, name, content string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "manifests")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// parse reads path with no previously accepted objects.
func parse(t *testing.T, path string) ([]manifest.Object, []*manifest.Error) {
	t.Helper()
	return newValidator(t).ParseFile(context.Background(), path, nil)
}

// onlyError fails unless errs is exactly one error, and returns it.
func onlyError(t *testing.T, errs []*manifest.Error) *manifest.Error {
	t.Helper()
	if len(errs) != 1 {
		t.Fatalf("got %d errors, want 1:\n%s", len(errs), joined(errs))
	}
	return errs[0]
}

func TestParseFileReportsFileFieldAndReason(t *testing.T) {
	path := writeManifest(t, "db.yaml", fixtures.Edit(fixtures.Named(fixtures.ValidInstance, "db"), `cpu: "2"`, `cpu: "0"`))
	objs, errs := parse(t, path)
	if len(objs) != 0 {
		t.Errorf("got %d objects from an invalid file", len(objs))
	}
	e := onlyError(t, errs)
	want := path + `:spec.resources.cpu: Invalid value: "0": must be greater than 0`
	if e.Error() != want {
		t.Errorf("error = %q\nwant    %q", e.Error(), want)
	}
	if e.File != path || e.Index != 0 || e.Field != "spec.resources.cpu" {
		t.Errorf("error = %+v", *e)
	}
}

func TestParseFileNamesTheLineOfAYAMLSyntaxError(t *testing.T) {
	good := fixtures.Named(fixtures.ValidObjectStore, "minio")
	bad := "apiVersion: outpost.dev/v1alpha1\n" +
		"kind: Backup\n" +
		"metadata:\n" +
		"  name: nightly\n" +
		"   namespace: default\n" + // indented one space too far
		"spec:\n" +
		"  instance: {name: main}\n"
	path := writeManifest(t, "broken.yaml", good+"---\n"+bad)
	badLine := strings.Count(good, "\n") + 1 + 5 // the line after "---", then 4 more

	objs, errs := parse(t, path)
	if len(objs) != 1 || objs[0].Key() != "ObjectStore/default/minio" {
		t.Errorf("the good document before the broken one was lost: %v", objs)
	}
	e := onlyError(t, errs)
	want := fmt.Sprintf("%s:line %d: ", path, badLine)
	if e.Index != 1 || !strings.HasPrefix(e.Error(), want) {
		t.Errorf("error = %q (document %d), want document 1 and it to start with %q", e, e.Index, want)
	}
}

func TestParseFileNamesAnUnknownField(t *testing.T) {
	path := writeManifest(t, "db.yaml", fixtures.Edit(fixtures.Named(fixtures.ValidInstance, "db"), "spec:\n", "spec:\n  cpuu: 2\n"))
	_, errs := parse(t, path)
	e := onlyError(t, errs)
	if e.Field != "spec.cpuu" || !strings.Contains(e.Error(), path+":spec.cpuu: unknown field") {
		t.Errorf("error = %q, want it to name spec.cpuu as unknown", e)
	}
}

func TestParseFileRejectsWrongAPIVersionAndKind(t *testing.T) {
	for _, tc := range []struct {
		name, old, new, field string
	}{
		{"apiVersion of another version", "outpost.dev/v1alpha1", "outpost.dev/v1", "apiVersion"},
		{"apiVersion of another group", "outpost.dev/v1alpha1", "apps/v1", "apiVersion"},
		{"misspelled kind", "kind: PostgresInstance", "kind: PostgresInstanse", "kind"},
		{"no kind", "kind: PostgresInstance\n", "", "kind"},
		{"no apiVersion", "apiVersion: outpost.dev/v1alpha1\n", "", "apiVersion"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeManifest(t, "db.yaml", fixtures.Edit(fixtures.Named(fixtures.ValidInstance, "db"), tc.old, tc.new))
			objs, errs := parse(t, path)
			if len(objs) != 0 || len(errs) == 0 {
				t.Fatalf("got %d objects and no error", len(objs))
			}
			if errs[0].Field != tc.field || !strings.HasPrefix(errs[0].Error(), path+":"+tc.field+": ") {
				t.Errorf("errors:\n%swant the first to name %s", joined(errs), tc.field)
			}
		})
	}
	t.Run("names the kinds it knows", func(t *testing.T) {
		path := writeManifest(t, "db.yaml", fixtures.Edit(fixtures.Named(fixtures.ValidInstance, "db"), "kind: PostgresInstance", "kind: Deployment"))
		_, errs := parse(t, path)
		e := onlyError(t, errs)
		for _, kind := range []string{"PostgresInstance", "FeatureStore", "ObjectStore", "DataController", "Backup"} {
			if !strings.Contains(e.Reason, kind) {
				t.Errorf("error %q does not list kind %s", e, kind)
			}
		}
	})
}

func TestParseFileKeepsGoodDocumentsBesideABadOne(t *testing.T) {
	content := fixtures.Named(fixtures.ValidObjectStore, "minio") +
		"---\n" + fixtures.Edit(fixtures.Named(fixtures.ValidInstance, "db"), `memory: 4Gi`, `memory: 64Mi`) +
		"---\n" + fixtures.Named(fixtures.ValidFeatureStore, "products")
	path := writeManifest(t, "site.yaml", content)
	objs, errs := parse(t, path)

	e := onlyError(t, errs)
	if e.Index != 1 || e.Field != "spec.resources.memory" {
		t.Errorf("error = %+v, want document 1's spec.resources.memory", *e)
	}
	if len(objs) != 2 {
		t.Fatalf("got %d objects, want the two good ones", len(objs))
	}
	for i, want := range []struct {
		key   string
		index int
	}{{"ObjectStore/default/minio", 0}, {"FeatureStore/default/products", 2}} {
		if objs[i].Key() != want.key || objs[i].Index != want.index || objs[i].File != path {
			t.Errorf("object %d = %s (document %d of %s), want %s (document %d)", i, objs[i].Key(), objs[i].Index, objs[i].File, want.key, want.index)
		}
	}
}

func TestParseFileRequiresAName(t *testing.T) {
	for _, tc := range []struct{ name, old, new string }{
		{"no name", "  name: %NAME%\n", ""},
		{"generateName instead", "  name: %NAME%\n", "  generateName: db-\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeManifest(t, "db.yaml", fixtures.Edit(fixtures.ValidInstance, tc.old, tc.new))
			objs, errs := parse(t, path)
			if len(objs) != 0 {
				t.Fatalf("accepted a manifest without a name")
			}
			// Like the apiserver, the validator adds that CEL rules were
			// not checked (a field of the whole object, "").
			if len(errs) == 0 || errs[0].Field != "metadata.name" || !strings.Contains(errs[0].Reason, "Required value") {
				t.Fatalf("errors:\n%swant metadata.name required first", joined(errs))
			}
			for _, e := range errs[1:] {
				if e.Field != "" {
					t.Errorf("errors:\n%swant no field but metadata.name named", joined(errs))
				}
			}
		})
	}
}

func TestParseFileSkipsEmptyDocumentsAndDefaultsTheNamespace(t *testing.T) {
	content := "---\n# the site's object store\n---\n\n" +
		strings.Replace(fixtures.Named(fixtures.ValidObjectStore, "minio"), "  namespace: default\n", "", 1) + "---\n"
	objs, errs := parse(t, writeManifest(t, "store.yaml", content))
	if len(errs) > 0 {
		t.Fatalf("errors:\n%s", joined(errs))
	}
	if len(objs) != 1 || objs[0].Index != 0 || objs[0].Key() != "ObjectStore/default/minio" || objs[0].Namespace() != "default" {
		t.Fatalf("objects = %v, want ObjectStore/default/minio as document 0", objs)
	}
	if region, _, _ := unstructured.NestedString(objs[0].Unstructured.Object, "spec", "region"); region != "us-east-1" {
		t.Errorf("spec.region = %q, want the CRD default us-east-1", region)
	}
}

func TestParseFileRejectsTheSameObjectTwice(t *testing.T) {
	store := fixtures.Named(fixtures.ValidObjectStore, "minio")
	path := writeManifest(t, "stores.yaml", store+"---\n"+fixtures.Edit(store, "outpost-backups", "other-bucket"))
	objs, errs := parse(t, path)
	e := onlyError(t, errs)
	if len(objs) != 1 || e.Index != 1 || e.Field != "metadata.name" || !strings.Contains(e.Reason, "ObjectStore/default/minio") {
		t.Errorf("objects %v, error %q; want the first kept and the second named as a duplicate", objs, e)
	}
}

func TestParseFileRejectsADuplicateKey(t *testing.T) {
	path := writeManifest(t, "db.yaml", fixtures.Edit(fixtures.Named(fixtures.ValidInstance, "db"), "    memory: 4Gi\n", "    memory: 4Gi\n    cpu: \"4\"\n"))
	_, errs := parse(t, path)
	e := onlyError(t, errs)
	if !strings.HasPrefix(e.Field, "line ") || !strings.Contains(e.Reason, "cpu") {
		t.Errorf("error = %q, want the line of the second cpu", e)
	}
}

func TestParseFileAppliesTransitionRulesAgainstOlds(t *testing.T) {
	v := newValidator(t)
	ctx := context.Background()
	first := writeManifest(t, "fs.yaml", fixtures.Named(fixtures.ValidFeatureStore, "products"))
	accepted, errs := v.ParseFile(ctx, first, nil)
	if len(errs) > 0 || len(accepted) != 1 {
		t.Fatalf("first version: %d objects, errors:\n%s", len(accepted), joined(errs))
	}
	olds := func(key string) *unstructured.Unstructured {
		if key == accepted[0].Key() {
			return accepted[0].Unstructured
		}
		return nil
	}

	changed := writeManifest(t, "fs.yaml", fixtures.Edit(fixtures.Named(fixtures.ValidFeatureStore, "products"), "dimensions: 768", "dimensions: 1024"))
	_, errs = v.ParseFile(ctx, changed, olds)
	if e := onlyError(t, errs); e.Field != "spec.dimensions" || !strings.Contains(e.Reason, "cannot change") {
		t.Errorf("error = %q, want spec.dimensions cannot change", e)
	}

	tuned := writeManifest(t, "fs.yaml", fixtures.Edit(fixtures.Named(fixtures.ValidFeatureStore, "products"), "{m: 16}", "{m: 32}"))
	if objs, errs := v.ParseFile(ctx, tuned, olds); len(errs) > 0 || len(objs) != 1 {
		t.Errorf("a mutable change: %d objects, errors:\n%s", len(objs), joined(errs))
	}
}

func TestObjectIntoDecodesTheTypedObject(t *testing.T) {
	objs, errs := parse(t, writeManifest(t, "db.yaml", fixtures.Named(fixtures.ValidInstance, "db")))
	if len(errs) > 0 || len(objs) != 1 {
		t.Fatalf("%d objects, errors:\n%s", len(objs), joined(errs))
	}
	var pgi outpostv1.PostgresInstance
	if err := objs[0].Into(&pgi); err != nil {
		t.Fatal(err)
	}
	if pgi.Name != "db" || pgi.Spec.Resources.CPU.String() != "2" || pgi.Spec.Version != 15 || pgi.Spec.Bootstrap.InitDB == nil || pgi.Spec.Bootstrap.InitDB.Database != "app" {
		t.Errorf("decoded %+v, want name db, cpu 2 and the defaults", pgi)
	}

	var fs outpostv1.FeatureStore
	if err := objs[0].Into(&fs); err == nil || !strings.Contains(err.Error(), "PostgresInstance") {
		t.Errorf("decoding a PostgresInstance into a FeatureStore: err = %v", err)
	}
}

func TestValidateLeavesItsInputAlone(t *testing.T) {
	v := newValidator(t)
	in := decodeLikeKubectl(t, strings.Replace(fixtures.Named(fixtures.ValidObjectStore, "minio"), "  namespace: default\n", "", 1))
	before := in.DeepCopy()
	if _, errs := v.Validate(context.Background(), "store.yaml", 0, in, nil); len(errs) > 0 {
		t.Fatalf("errors:\n%s", joined(errs))
	}
	if !equality.Semantic.DeepEqual(in.Object, before.Object) {
		t.Errorf("Validate changed its input:\n%v\nwas\n%v", in.Object, before.Object)
	}
}
