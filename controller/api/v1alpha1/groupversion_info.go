// Package v1alpha1 holds the Outpost API, group outpost.dev, version v1alpha1:
// the Go types of the five custom resources (DataController, PostgresInstance,
// FeatureStore, ObjectStore, Backup) with the kubebuilder markers from which
// the CRDs in charts/outpost/crds are generated.
//
// The types files hold only types, their documentation and their validation
// markers; every rule that can be a schema or CEL rule is one here, so the
// apiserver (and the manifests directory, which validates against the same
// CRDs) rejects a bad spec at once.
//
// +kubebuilder:object:generate=true
// +groupName=outpost.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every Outpost resource.
	GroupVersion = schema.GroupVersion{Group: "outpost.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the Outpost types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the Outpost types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
