package manifest_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/outpostdata/outpost/controller/manifest"
	"github.com/outpostdata/outpost/test/fixtures"
	"github.com/outpostdata/outpost/test/harness"
)

// These tests hold the validator to its promise: a manifests directory
// rejects exactly what the apiserver rejects, naming the same fields, and
// stores what the apiserver stores. Every case goes to a real kube-apiserver
// and to the validator.

// decodeLikeKubectl turns a manifest into the object kubectl would send,
// without going through the package under test.
func decodeLikeKubectl(t *testing.T, manifest string) *unstructured.Unstructured {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(manifest))
	if err != nil {
		t.Fatalf("test manifest is not YAML: %v\n%s", err, manifest)
	}
	u := &unstructured.Unstructured{}
	if err := utiljson.Unmarshal(js, &u.Object); err != nil {
		t.Fatalf("test manifest: %v", err)
	}
	return u
}

// strictUnknownField is how the apiserver names an unknown field under
// fieldValidation=Strict, in a BadRequest rather than an Invalid status.
var strictUnknownField = regexp.MustCompile(`unknown field "([^"]+)"`)

// apiserverCauses returns the rejection's causes as "field: message" lines,
// for an Invalid status; nil for any other error.
func apiserverCauses(err error) []string {
	var status *apierrors.StatusError
	if !errors.As(err, &status) || !apierrors.IsInvalid(err) {
		return nil
	}
	var out []string
	for _, c := range status.ErrStatus.Details.Causes {
		f := c.Field
		if f == "<nil>" {
			f = ""
		}
		out = append(out, f+": "+c.Message)
	}
	return uniqueSorted(out)
}

// validatorCauses renders the validator's errors as apiserverCauses does.
// The note that CEL rules were not checked is the one message the
// validator words differently ("Invalid value: null: " dropped).
func validatorCauses(errs []*manifest.Error) []string {
	var out []string
	for _, e := range errs {
		reason := e.Reason
		if e.Field == "" && strings.HasPrefix(reason, "some validation rules were not checked") {
			reason = "Invalid value: null: " + reason
		}
		out = append(out, e.Field+": "+reason)
	}
	return uniqueSorted(out)
}

// apiserverFields returns the field paths a rejection by the apiserver
// names: the causes of an Invalid status, or the unknown fields of a strict
// decoding error. The whole object (no field) is "".
func apiserverFields(t *testing.T, err error) []string {
	t.Helper()
	var status *apierrors.StatusError
	if !errors.As(err, &status) {
		t.Fatalf("apiserver error is not a status: %v", err)
	}
	var fields []string
	switch {
	case apierrors.IsInvalid(err):
		for _, c := range status.ErrStatus.Details.Causes {
			f := c.Field
			if f == "<nil>" {
				f = ""
			}
			fields = append(fields, f)
		}
	case apierrors.IsBadRequest(err):
		for _, m := range strictUnknownField.FindAllStringSubmatch(status.ErrStatus.Message, -1) {
			fields = append(fields, m[1])
		}
	}
	if len(fields) == 0 {
		t.Fatalf("apiserver rejection names no field: %v", err)
	}
	return uniqueSorted(fields)
}

func validatorFields(errs []*manifest.Error) []string {
	var fields []string
	for _, e := range errs {
		fields = append(fields, e.Field)
	}
	return uniqueSorted(fields)
}

func uniqueSorted(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func joined(errs []*manifest.Error) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintln(&b, e)
	}
	return b.String()
}

func newValidator(t *testing.T) *manifest.Validator {
	t.Helper()
	v, err := manifest.NewValidator()
	if err != nil {
		t.Fatalf("NewValidator: %v", err)
	}
	return v
}

// strict is kubectl's default field validation.
var strict = client.FieldValidation(metav1.FieldValidationStrict)

func TestValidatorRejectsWhatTheAPIServerRejectsNamingTheSameFields(t *testing.T) {
	api := harness.StartAPIServer(t)
	v := newValidator(t)
	ctx := context.Background()

	for i, tc := range fixtures.BadSpecs {
		t.Run(tc.Name, func(t *testing.T) {
			manifestYAML := fixtures.Named(tc.Manifest, fmt.Sprintf("bad-%d", i))

			apiErr := api.Client.Create(ctx, decodeLikeKubectl(t, manifestYAML), strict)
			if apiErr == nil {
				t.Fatalf("the apiserver accepted the bad spec; the fixture is wrong:\n%s", manifestYAML)
			}
			want := apiserverFields(t, apiErr)

			_, errs := v.Validate(ctx, "bad.yaml", 0, decodeLikeKubectl(t, manifestYAML), nil)
			if len(errs) == 0 {
				t.Fatalf("the validator accepted a spec the apiserver rejects with: %v", apiErr)
			}
			got := validatorFields(errs)

			if !equality.Semantic.DeepEqual(got, want) {
				t.Errorf("validator names fields %q, apiserver names %q\nvalidator:\n%sapiserver: %v", got, want, joined(errs), apiErr)
			}
			if !contains(got, tc.Field) {
				t.Errorf("validator does not name %s:\n%s", tc.Field, joined(errs))
			}
			if want := apiserverCauses(apiErr); want != nil {
				if got := validatorCauses(errs); !equality.Semantic.DeepEqual(got, want) {
					t.Errorf("messages differ\nvalidator:\n  %s\napiserver:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
				}
			}
			t.Logf("both name %q", want)
			for _, frag := range tc.WantInMessage {
				if !strings.Contains(joined(errs), frag) {
					t.Errorf("validator's message does not mention %q:\n%s", frag, joined(errs))
				}
			}
			for _, e := range errs {
				if !strings.HasPrefix(e.Error(), "bad.yaml:") {
					t.Errorf("error does not start with the file name: %q", e)
				}
			}
		})
	}
}

func TestValidatorDefaultsAndChecksUpdatesLikeTheAPIServer(t *testing.T) {
	api := harness.StartAPIServer(t)
	v := newValidator(t)
	ctx := context.Background()

	for i, m := range fixtures.Valid {
		manifestYAML := fixtures.Named(m, fmt.Sprintf("good-%d", i))
		kind := decodeLikeKubectl(t, manifestYAML).GetKind()
		t.Run("valid "+kind+" stored alike", func(t *testing.T) {
			sent := decodeLikeKubectl(t, manifestYAML)
			if err := api.Client.Create(ctx, sent, strict); err != nil {
				t.Fatalf("the apiserver rejected a valid fixture: %v", err)
			}
			stored := &unstructured.Unstructured{}
			stored.SetGroupVersionKind(sent.GroupVersionKind())
			if err := api.Client.Get(ctx, client.ObjectKeyFromObject(sent), stored); err != nil {
				t.Fatal(err)
			}

			obj, errs := v.Validate(ctx, "good.yaml", 0, decodeLikeKubectl(t, manifestYAML), nil)
			if len(errs) > 0 {
				t.Fatalf("the validator rejected a spec the apiserver accepts:\n%s", joined(errs))
			}
			if !equality.Semantic.DeepEqual(obj.Unstructured.Object["spec"], stored.Object["spec"]) {
				got, _ := yaml.Marshal(obj.Unstructured.Object["spec"])
				want, _ := yaml.Marshal(stored.Object["spec"])
				t.Errorf("defaulted spec differs from the apiserver's\nvalidator:\n%s\napiserver:\n%s", got, want)
			}
			if obj.Namespace() != stored.GetNamespace() || obj.Name() != stored.GetName() {
				t.Errorf("validator's object is %s, apiserver stored %s/%s", obj.Key(), stored.GetNamespace(), stored.GetName())
			}
		})
	}

	for i, tc := range fixtures.ImmutableChanges {
		t.Run("immutable "+tc.Name, func(t *testing.T) {
			name := fmt.Sprintf("immutable-%d", i)
			from, to := fixtures.Named(tc.From, name), fixtures.Named(tc.To, name)

			// The apiserver: create, then update the stored object's spec.
			created := decodeLikeKubectl(t, from)
			if err := api.Client.Create(ctx, created, strict); err != nil {
				t.Fatalf("create: %v", err)
			}
			created.Object["spec"] = decodeLikeKubectl(t, to).Object["spec"]
			apiErr := api.Client.Update(ctx, created, strict)
			if apiErr == nil {
				t.Fatalf("the apiserver accepted the change; the fixture is wrong")
			}
			want := apiserverFields(t, apiErr)

			// The validator: the accepted object is the old one.
			old, errs := v.Validate(ctx, "store.yaml", 0, decodeLikeKubectl(t, from), nil)
			if len(errs) > 0 {
				t.Fatalf("create: %s", joined(errs))
			}
			_, errs = v.Validate(ctx, "store.yaml", 0, decodeLikeKubectl(t, to), old.Unstructured)
			if len(errs) == 0 {
				t.Fatalf("the validator accepted a change the apiserver rejects with: %v", apiErr)
			}
			if got := validatorFields(errs); !equality.Semantic.DeepEqual(got, want) || !contains(got, tc.Field) {
				t.Errorf("validator names fields %q, apiserver names %q, want %s among them\nvalidator:\n%sapiserver: %v", got, want, tc.Field, joined(errs), apiErr)
			}
			if got, want := validatorCauses(errs), apiserverCauses(apiErr); !equality.Semantic.DeepEqual(got, want) {
				t.Errorf("messages differ\nvalidator:\n  %s\napiserver:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
			for _, frag := range tc.WantInMessage {
				if !strings.Contains(joined(errs), frag) {
					t.Errorf("validator's message does not mention %q:\n%s", frag, joined(errs))
				}
			}

			// Without the old object there is nothing to compare with: a
			// create of the changed spec is fine for both.
			if _, errs := v.Validate(ctx, "store.yaml", 0, decodeLikeKubectl(t, to), nil); len(errs) > 0 {
				t.Errorf("the changed spec alone is rejected:\n%s", joined(errs))
			}
		})
	}

	t.Run("mutable change accepted by both", func(t *testing.T) {
		from := fixtures.Named(fixtures.ValidInstance, "resized")
		to := fixtures.Edit(from, `cpu: "2"`, `cpu: "4"`)
		created := decodeLikeKubectl(t, from)
		if err := api.Client.Create(ctx, created, strict); err != nil {
			t.Fatalf("create: %v", err)
		}
		created.Object["spec"] = decodeLikeKubectl(t, to).Object["spec"]
		if err := api.Client.Update(ctx, created, strict); err != nil {
			t.Fatalf("the apiserver rejected a CPU change: %v", err)
		}

		old, errs := v.Validate(ctx, "db.yaml", 0, decodeLikeKubectl(t, from), nil)
		if len(errs) > 0 {
			t.Fatalf("create: %s", joined(errs))
		}
		updated, errs := v.Validate(ctx, "db.yaml", 0, decodeLikeKubectl(t, to), old.Unstructured)
		if len(errs) > 0 {
			t.Fatalf("the validator rejected a CPU change:\n%s", joined(errs))
		}
		if !equality.Semantic.DeepEqual(updated.Unstructured.Object["spec"], created.Object["spec"]) {
			t.Errorf("updated spec differs from the apiserver's:\nvalidator: %v\napiserver: %v", updated.Unstructured.Object["spec"], created.Object["spec"])
		}
	})
}
