package manifest

import (
	"context"
	"fmt"
	"io/fs"
	"sort"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/storage/names"

	chart "github.com/outpostdata/outpost/charts/outpost"
)

// Validator validates manifests against a set of CRDs. It is safe for
// concurrent use: everything it holds is read-only after NewValidator.
type Validator struct {
	kinds map[schema.GroupVersionKind]*kindSchema
	// apiVersions and kindNames list what the CRDs serve, for messages.
	apiVersions []string
	kindNames   []string
}

// NewValidator builds a validator from the CRDs embedded in the binary from
// charts/outpost/crds, the ones the Helm chart installs.
func NewValidator() (*Validator, error) {
	return NewValidatorFromCRDs(chart.CRDs())
}

// NewValidatorFromCRDs builds a validator from the CRD files (*.yaml) at the
// top of files; for tests and tools that validate against other CRDs.
func NewValidatorFromCRDs(files fs.FS) (*Validator, error) {
	kinds, err := loadKinds(files)
	if err != nil {
		return nil, fmt.Errorf("manifest validator: %w", err)
	}
	v := &Validator{kinds: kinds}
	versions, names := map[string]bool{}, map[string]bool{}
	for gvk := range kinds {
		versions[gvk.GroupVersion().String()] = true
		names[gvk.Kind] = true
	}
	v.apiVersions, v.kindNames = sortedKeys(versions), sortedKeys(names)
	return v, nil
}

// Kinds lists the kinds the validator knows, sorted.
func (v *Validator) Kinds() []string { return append([]string(nil), v.kindNames...) }

// Validate validates and defaults one decoded object as the apiserver does
// on create, or on update when old, the previously accepted version of the
// same object, is given; then CEL transition rules (self == oldSelf) apply.
//
// The checks run in the apiserver's order: apiVersion and kind; unknown
// fields (kubectl's default strict field validation), which like the
// apiserver stop validation there; defaults; metadata (a name that is a
// DNS-1123 subdomain); OpenAPI schema; list types; CEL. obj and old are not
// modified.
func (v *Validator) Validate(ctx context.Context, file string, index int, obj, old *unstructured.Unstructured) (Object, []*Error) {
	if obj == nil || obj.Object == nil {
		return Object{}, []*Error{{File: file, Index: index, Reason: "empty manifest: want an object with apiVersion, kind, metadata and spec"}}
	}
	ks, errs := v.kindSchemaOf(obj)
	if len(errs) > 0 {
		return Object{}, fromFieldErrors(file, index, errs)
	}

	u := obj.DeepCopy()
	unknown, err := coerce(u, ks.structural, true)
	if err != nil {
		return Object{}, []*Error{{File: file, Index: index, Field: "metadata", Reason: "Invalid value: " + err.Error()}}
	}
	if len(unknown) > 0 {
		out := make([]*Error, len(unknown))
		for i, p := range unknown {
			out[i] = &Error{File: file, Index: index, Field: p, Reason: fmt.Sprintf("unknown field: %s has no such field; check its spelling and indentation", ks.gvk.Kind)}
		}
		return Object{}, out
	}
	ks.prepare(u)

	var fieldErrs field.ErrorList
	if u.GetName() == "" && u.GetGenerateName() != "" {
		// The apiserver would generate a name and validate the object
		// with it; so do we, but a manifests directory needs a fixed name
		// to know the object again when the file changes.
		fieldErrs = append(fieldErrs, field.Required(field.NewPath("metadata", "name"), "manifests need a fixed name; generateName is not supported"))
		generated := u.DeepCopy()
		generated.SetName(names.SimpleNameGenerator.GenerateName(u.GetGenerateName()))
		fieldErrs = append(fieldErrs, ks.validateCreate(ctx, generated)...)
		return Object{}, fromFieldErrors(file, index, fieldErrs)
	}
	if old == nil {
		fieldErrs = append(fieldErrs, ks.validateCreate(ctx, u)...)
	} else {
		stored := old.DeepCopy()
		// Read back as the apiserver reads from storage: pruned without
		// complaint, defaulted.
		if _, err := coerce(stored, ks.structural, false); err != nil {
			return Object{}, []*Error{{File: file, Index: index, Field: "metadata", Reason: "the previously accepted version is unreadable: " + err.Error()}}
		}
		ks.prepare(stored)
		fieldErrs = append(fieldErrs, ks.validateUpdate(ctx, u, stored)...)
	}
	if len(fieldErrs) > 0 {
		return Object{}, fromFieldErrors(file, index, fieldErrs)
	}
	return Object{File: file, Index: index, Unstructured: u}, nil
}

// kindSchemaOf finds the schema for obj's apiVersion and kind, or says
// which are served (ValidateTypeMeta in customresource/validator.go, which
// on a cluster is the REST path itself).
func (v *Validator) kindSchemaOf(obj *unstructured.Unstructured) (*kindSchema, field.ErrorList) {
	var errs field.ErrorList
	apiVersion, kind := obj.GetAPIVersion(), obj.GetKind()
	if apiVersion == "" {
		errs = append(errs, field.Required(field.NewPath("apiVersion"), fmt.Sprintf("want %s", joinQuoted(v.apiVersions))))
	}
	if kind == "" {
		errs = append(errs, field.Required(field.NewPath("kind"), fmt.Sprintf("want one of %s", joinQuoted(v.kindNames))))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return nil, field.ErrorList{field.NotSupported(field.NewPath("apiVersion"), apiVersion, v.apiVersions)}
	}
	if ks, ok := v.kinds[gv.WithKind(kind)]; ok {
		return ks, nil
	}
	knownVersion, knownKind := false, false
	for gvk := range v.kinds {
		knownVersion = knownVersion || gvk.GroupVersion() == gv
		knownKind = knownKind || gvk.Kind == kind
	}
	if !knownVersion {
		errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), apiVersion, v.apiVersions))
	}
	if !knownKind || knownVersion {
		errs = append(errs, field.NotSupported(field.NewPath("kind"), kind, v.kindNames))
	}
	return nil, errs
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func joinQuoted(values []string) string {
	s := ""
	for i, v := range values {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%q", v)
	}
	return s
}
