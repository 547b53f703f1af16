package manifest

import (
	"context"
	"fmt"

	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel/model"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	structurallisttype "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	schemaobjectmeta "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/objectmeta"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	apiextensionsfeatures "k8s.io/apiextensions-apiserver/pkg/features"
	"k8s.io/apimachinery/pkg/api/operation"
	genericvalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/cel/common"
	"k8s.io/apiserver/pkg/features"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
)

// This file is the apiserver's path for a create or update of a custom
// resource, step by step, each step calling the same function the apiserver
// calls. Where a step lives in a package too heavy to link into the outpost
// binary (k8s.io/apiserver/pkg/registry, which brings the etcd client), its
// few lines are repeated here with the name of the function they mirror.

// coerce does to u what the apiserver's request decoder does to a body
// (unstructuredSchemaCoercer.apply in customresource_handler.go): check and
// normalise metadata, and prune fields the schema does not declare.
//
// With strict, it returns the paths of the pruned fields, as the decoder
// does under kubectl's default fieldValidation=Strict, and a malformed
// metadata field is an error. Without strict (an object read back from
// storage) malformed metadata fields are dropped instead.
func coerce(u *unstructured.Unstructured, s *structuralschema.Structural, strict bool) (unknown []string, err error) {
	kind, foundKind, err := unstructured.NestedString(u.Object, "kind")
	if err != nil {
		return nil, err
	}
	apiVersion, foundAPIVersion, err := unstructured.NestedString(u.Object, "apiVersion")
	if err != nil {
		return nil, err
	}
	objectMeta, foundObjectMeta, metaUnknown, err := schemaobjectmeta.GetObjectMetaWithOptions(u.Object, schemaobjectmeta.ObjectMetaOptions{
		DropMalformedFields:     !strict,
		ReturnUnknownFieldPaths: strict,
	})
	if err != nil {
		return nil, err
	}
	unknown = append(unknown, metaUnknown...)

	unknown = append(unknown, structuralpruning.PruneWithOptions(u.Object, s, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: strict})...)
	structuraldefaulting.PruneNonNullableNullsWithoutDefaults(u.Object, s)

	fieldErr, embeddedUnknown := schemaobjectmeta.CoerceWithOptions(nil, u.Object, s, false, schemaobjectmeta.CoerceOptions{
		DropInvalidFields:       !strict,
		ReturnUnknownFieldPaths: strict,
	})
	if fieldErr != nil {
		return nil, fieldErr
	}
	unknown = append(unknown, embeddedUnknown...)

	if foundKind {
		u.SetKind(kind)
	}
	if foundAPIVersion {
		u.SetAPIVersion(apiVersion)
	}
	if foundObjectMeta {
		if err := schemaobjectmeta.SetObjectMeta(u.Object, objectMeta); err != nil {
			return nil, err
		}
		// SetObjectMeta renders the zero creation time as null; the
		// apiserver overwrites it on create, a manifest has none.
		if ts, ok := u.Object["metadata"].(map[string]interface{}); ok && ts["creationTimestamp"] == nil {
			delete(ts, "creationTimestamp")
		}
	}
	return unknown, nil
}

// prepare makes u what the apiserver would validate and store: defaulted
// (unstructuredDefaulter), in the default namespace when it names none
// (rest.BeforeCreate with kubectl's default namespace), and without status
// when status is a subresource (customResourceStrategy.PrepareForCreate; on
// update PrepareForUpdate keeps the stored status, and a manifest's object
// has none).
func (ks *kindSchema) prepare(u *unstructured.Unstructured) {
	structuraldefaulting.Default(u.Object, ks.structural)
	if ks.namespaced && u.GetNamespace() == "" {
		u.SetNamespace(DefaultNamespace)
	}
	if ks.hasStatus {
		delete(u.Object, "status")
	}
}

// validateCreate is rest.ValidateCreate with customResourceStrategy.Validate.
func (ks *kindSchema) validateCreate(ctx context.Context, u *unstructured.Unstructured) field.ErrorList {
	meta, errs := objectMetaOf(u)
	if len(errs) > 0 {
		return errs
	}
	errs = append(errs, genericvalidation.ValidateObjectMetaDeclaratively(ctx, operation.Create, meta, nil, ks.namespaced, genericvalidation.NameIsDNSSubdomain, field.NewPath("metadata"), declarativeValidationBeta())...)
	errs = append(errs, apiservervalidation.ValidateCustomResource(nil, u.Object, ks.openAPI)...)
	errs = append(errs, schemaobjectmeta.Validate(ctx, nil, u.Object, ks.structural, false)...)
	errs = append(errs, structurallisttype.ValidateListSetsAndMaps(nil, ks.structural, u.Object)...)
	errs = append(errs, ks.validateCEL(ctx, errs, u.Object, nil)...)
	if len(errs) == 0 {
		errs = append(errs, genericvalidation.ValidateObjectMetaAccessor(meta, ks.namespaced, path.ValidatePathSegmentName, field.NewPath("metadata"))...)
	}
	return errs
}

// validateUpdate is rest.ValidateUpdate with
// customResourceStrategy.ValidateUpdate: with the old object, transition
// rules (self == oldSelf) run, and errors in fields that did not change are
// ratcheted away as the apiserver does.
func (ks *kindSchema) validateUpdate(ctx context.Context, u, old *unstructured.Unstructured) field.ErrorList {
	meta, errs := objectMetaOf(u)
	if len(errs) > 0 {
		return errs
	}
	oldMeta, errs := objectMetaOf(old)
	if len(errs) > 0 {
		return errs
	}
	carrySystemFields(meta, oldMeta)
	metaPath := field.NewPath("metadata")
	errs = append(errs, genericvalidation.ValidateObjectMetaAccessor(meta, ks.namespaced, path.ValidatePathSegmentName, metaPath)...)
	errs = append(errs, genericvalidation.ValidateObjectMetaAccessorUpdate(meta, oldMeta, metaPath)...)

	var options []apiservervalidation.ValidationOption
	var celOptions []cel.Option
	if utilfeature.DefaultFeatureGate.Enabled(apiextensionsfeatures.CRDValidationRatcheting) {
		correlated := common.NewCorrelatedObject(u.Object, old.Object, &model.Structural{Structural: ks.structural})
		options = append(options, apiservervalidation.WithRatcheting(correlated))
		celOptions = append(celOptions, cel.WithRatcheting(correlated))
	}
	errs = append(errs, genericvalidation.ValidateObjectMetaDeclaratively(ctx, operation.Update, meta, oldMeta, ks.namespaced, nil, metaPath, declarativeValidationBeta())...)
	errs = append(errs, apiservervalidation.ValidateCustomResourceUpdate(nil, u.Object, old.Object, ks.openAPI, options...)...)
	errs = append(errs, schemaobjectmeta.Validate(ctx, nil, u.Object, ks.structural, false)...)
	if oldErrs := structurallisttype.ValidateListSetsAndMaps(nil, ks.structural, old.Object); len(oldErrs) == 0 {
		errs = append(errs, structurallisttype.ValidateListSetsAndMaps(nil, ks.structural, u.Object)...)
	}
	errs = append(errs, ks.validateCEL(ctx, errs, u.Object, old.Object, celOptions...)...)
	return errs
}

// carrySystemFields gives the new metadata the system fields of the old, as
// `kubectl apply` (a patch of the stored object) and rest.BeforeUpdate do, so
// that only what the manifest says is checked. A manifests directory keeps no
// resource versions and every apply updates the latest, so a missing one is
// not the "must be specified for an update" error it is on a bare PUT.
func carrySystemFields(meta, old *metav1.ObjectMeta) {
	if meta.UID == "" {
		meta.UID = old.UID
	}
	if meta.ResourceVersion == "" {
		meta.ResourceVersion = old.ResourceVersion
	}
	if meta.ResourceVersion == "" {
		meta.ResourceVersion = "manifest"
	}
	if !old.CreationTimestamp.IsZero() {
		meta.CreationTimestamp = old.CreationTimestamp
	}
	if old.DeletionTimestamp != nil {
		meta.DeletionTimestamp = old.DeletionTimestamp
	}
	if old.DeletionGracePeriodSeconds != nil && meta.DeletionGracePeriodSeconds == nil {
		meta.DeletionGracePeriodSeconds = old.DeletionGracePeriodSeconds
	}
	meta.Generation = old.Generation
}

// validateCEL runs the x-kubernetes-validations rules unless earlier errors
// make them meaningless; then, like the apiserver, it says rules were not
// checked instead (hasBlockingErr in customresource/strategy.go).
func (ks *kindSchema) validateCEL(ctx context.Context, earlier field.ErrorList, obj, old map[string]interface{}, options ...cel.Option) field.ErrorList {
	if ks.cel == nil {
		return nil
	}
	for _, e := range earlier {
		switch e.Type {
		case field.ErrorTypeNotSupported, field.ErrorTypeRequired, field.ErrorTypeTooLong, field.ErrorTypeTooMany, field.ErrorTypeTypeInvalid:
			return field.ErrorList{field.Invalid(nil, nil, "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation")}
		}
	}
	var oldObj interface{}
	if old != nil {
		oldObj = old
	}
	errs, _ := ks.cel.Validate(ctx, nil, ks.structural, obj, oldObj, celconfig.RuntimeCELCostBudget, options...)
	return errs
}

// objectMetaOf is getObjectMeta in customresource/validator.go.
func objectMetaOf(u *unstructured.Unstructured) (*metav1.ObjectMeta, field.ErrorList) {
	raw := u.Object["metadata"]
	if raw == nil {
		return &metav1.ObjectMeta{}, nil
	}
	m, ok := raw.(map[string]interface{})
	if !ok {
		return nil, field.ErrorList{field.Invalid(field.NewPath("metadata"), raw, fmt.Sprintf("expected map[string]interface{}, got %T", raw))}
	}
	meta := &metav1.ObjectMeta{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, meta); err != nil {
		return nil, field.ErrorList{field.Invalid(field.NewPath("metadata"), raw, err.Error())}
	}
	return meta, nil
}

// declarativeValidationBeta is the feature gate the apiserver passes to
// ValidateObjectMetaDeclaratively.
func declarativeValidationBeta() bool {
	return utilfeature.DefaultFeatureGate.Enabled(features.DeclarativeValidationBeta)
}
