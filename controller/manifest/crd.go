package manifest

import (
	"fmt"
	"io/fs"
	"path"

	"k8s.io/apiextensions-apiserver/pkg/apihelpers"
	apiextensionsinternal "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime/schema"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

// kindSchema is what the apiserver prepares from a CRD to serve one version
// of one kind (crdInfo in apiextensions-apiserver's customresource_handler.go),
// built by the same calls so that it validates the same way.
type kindSchema struct {
	gvk        schema.GroupVersionKind
	namespaced bool
	// hasStatus is true when the kind has a status subresource; then a
	// create or update through the main resource never sets status.
	hasStatus bool
	// structural is the structural schema with defaults pruned, used for
	// pruning, defaulting, list-type checks and CEL.
	structural *structuralschema.Structural
	// openAPI validates the OpenAPI v3 schema (types, enums, patterns,
	// bounds, required fields), ratcheting unchanged fields on update.
	openAPI apiservervalidation.SchemaValidator
	// cel evaluates x-kubernetes-validations; nil when the kind has none.
	cel *cel.Validator
}

// loadKinds reads every CRD in files and prepares a kindSchema for each
// served version, keyed by group/version and kind.
func loadKinds(files fs.FS) (map[schema.GroupVersionKind]*kindSchema, error) {
	names, err := fs.Glob(files, "*.yaml")
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no CRD files (*.yaml) to validate against")
	}
	kinds := map[schema.GroupVersionKind]*kindSchema{}
	for _, name := range names {
		data, err := fs.ReadFile(files, name)
		if err != nil {
			return nil, err
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(data, crd); err != nil {
			return nil, fmt.Errorf("CRD %s: %w", path.Base(name), err)
		}
		// The apiserver defaults a CRD when it is created; do the same so
		// the CRD reads as the one it serves.
		apiextensionsv1.SetObjectDefaults_CustomResourceDefinition(crd)
		for _, version := range crd.Spec.Versions {
			if !version.Served {
				continue
			}
			ks, err := newKindSchema(crd, version)
			if err != nil {
				return nil, fmt.Errorf("CRD %s version %s: %w", crd.Name, version.Name, err)
			}
			kinds[ks.gvk] = ks
		}
	}
	return kinds, nil
}

// newKindSchema mirrors the steps of customresource_handler.go's
// getOrCreateServingInfoFor for one version.
func newKindSchema(crd *apiextensionsv1.CustomResourceDefinition, version apiextensionsv1.CustomResourceDefinitionVersion) (*kindSchema, error) {
	validation, err := apihelpers.GetSchemaForVersion(crd, version.Name)
	if err != nil {
		return nil, err
	}
	if validation == nil || validation.OpenAPIV3Schema == nil {
		return nil, fmt.Errorf("has no schema; Outpost CRDs always have one")
	}
	internal := &apiextensionsinternal.CustomResourceValidation{}
	if err := apiextensionsv1.Convert_v1_CustomResourceValidation_To_apiextensions_CustomResourceValidation(validation, internal, nil); err != nil {
		return nil, fmt.Errorf("convert schema: %w", err)
	}

	s, err := structuralschema.NewStructural(internal.OpenAPIV3Schema)
	if err != nil {
		return nil, fmt.Errorf("schema is not structural: %w", err)
	}
	if errs := structuralschema.ValidateStructural(nil, s); len(errs) > 0 {
		return nil, fmt.Errorf("schema is not structural: %w", errs.ToAggregate())
	}
	// The handler does not own s completely (defaults are shared), so it
	// prunes defaults on a copy; so do we.
	s = s.DeepCopy()
	if err := structuraldefaulting.PruneDefaults(s); err != nil {
		return nil, fmt.Errorf("prune defaults: %w", err)
	}

	openAPI, _, err := apiservervalidation.NewSchemaValidator(internal.OpenAPIV3Schema)
	if err != nil {
		return nil, fmt.Errorf("OpenAPI schema: %w", err)
	}

	subresources, err := apihelpers.GetSubresourcesForVersion(crd, version.Name)
	if err != nil {
		return nil, err
	}
	return &kindSchema{
		gvk:        schema.GroupVersionKind{Group: crd.Spec.Group, Version: version.Name, Kind: crd.Spec.Names.Kind},
		namespaced: crd.Spec.Scope == apiextensionsv1.NamespaceScoped,
		hasStatus:  subresources != nil && subresources.Status != nil,
		structural: s,
		openAPI:    openAPI,
		// customresource.NewStrategy compiles CEL this way, once per CRD.
		cel: cel.NewValidator(s, true, celconfig.PerCallLimit),
	}, nil
}
