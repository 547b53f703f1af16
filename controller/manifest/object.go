package manifest

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

// Object is one manifest document after validation and defaulting.
type Object struct {
	// File is the path the document came from.
	File string
	// Index is the document's position within the file, from 0, counting
	// only non-empty documents.
	Index int
	// Unstructured is the object defaulted as the apiserver would store it,
	// with metadata.namespace defaulted to "default" and without status.
	Unstructured *unstructured.Unstructured
}

// Kind is the object's kind, for example "PostgresInstance".
func (o Object) Kind() string { return o.Unstructured.GetKind() }

// Namespace is the object's namespace; never empty.
func (o Object) Namespace() string { return o.Unstructured.GetNamespace() }

// Name is the object's metadata.name.
func (o Object) Name() string { return o.Unstructured.GetName() }

// Key returns "Kind/namespace/name", unique within a manifests directory.
func (o Object) Key() string { return Key(o.Kind(), o.Namespace(), o.Name()) }

// Key builds the key of an object of kind in namespace with name, as
// Object.Key does; an empty namespace is the default one.
func Key(kind, namespace, name string) string {
	if namespace == "" {
		namespace = DefaultNamespace
	}
	return kind + "/" + namespace + "/" + name
}

// DefaultNamespace is the namespace of a manifest that names none, as
// kubectl's default context would put it.
const DefaultNamespace = "default"

// typedScheme knows the Go types of the Outpost kinds, so Into can check it
// is given the right one.
var typedScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := outpostv1.AddToScheme(s); err != nil {
		panic(err) // registering a fixed set of types cannot fail
	}
	return s
}()

// Into decodes the object into its typed Go struct, for example
// *v1alpha1.PostgresInstance. It is strict: a field the Go type lacks is an
// error, because validation has already removed anything the CRD lacks, so
// such a field means the CRDs and the Go types disagree.
func (o Object) Into(out runtime.Object) error {
	gvks, _, err := typedScheme.ObjectKinds(out)
	if err != nil {
		return fmt.Errorf("%s: decode %s into %T: %w", o.File, o.Key(), out, err)
	}
	if gvk := o.Unstructured.GroupVersionKind(); gvks[0] != gvk {
		return fmt.Errorf("%s: %s is a %s, not a %s", o.File, o.Key(), gvk.Kind, gvks[0].Kind)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Unstructured.Object, out, true); err != nil {
		return fmt.Errorf("%s: decode %s into %T: %w", o.File, o.Key(), out, err)
	}
	return nil
}
