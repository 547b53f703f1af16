package manifest

import (
	"context"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// ParseFile reads a YAML file with one or more documents ("---"), skipping
// empty ones, and validates each with Validate; olds, which may be nil,
// returns the previously accepted version of an object by Key, or nil.
// It returns the valid objects and the errors of the invalid documents; one
// bad document never hides the good ones.
func (v *Validator) ParseFile(ctx context.Context, path string, olds func(key string) *unstructured.Unstructured) ([]Object, []*Error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, []*Error{{File: path, Reason: err.Error()}}
	}
	return v.ParseBytes(ctx, path, data, olds)
}

// ParseBytes is ParseFile for data already read; path is used in messages.
//
// Two documents of one file that define the same object (same Key) are an
// error on the second: which one is meant cannot be told.
func (v *Validator) ParseBytes(ctx context.Context, path string, data []byte, olds func(key string) *unstructured.Unstructured) ([]Object, []*Error) {
	var objects []Object
	var errs []*Error
	seen := map[string]int{} // Key → index of the document that defined it
	index := 0
	for _, doc := range splitDocuments(data) {
		if err := ctx.Err(); err != nil {
			return objects, append(errs, &Error{File: path, Index: index, Reason: fmt.Sprintf("stopped reading: %v", err)})
		}
		obj, lineErrs := doc.decode()
		if obj == nil && len(lineErrs) == 0 {
			continue // empty document
		}
		i := index
		index++
		if len(lineErrs) > 0 {
			for _, le := range lineErrs {
				errs = append(errs, &Error{File: path, Index: i, Field: fmt.Sprintf("line %d", le.line), Reason: le.reason})
			}
			continue
		}

		var old *unstructured.Unstructured
		key := ""
		if obj.GetName() != "" {
			key = Key(obj.GetKind(), obj.GetNamespace(), obj.GetName())
			if olds != nil {
				old = olds(key)
			}
		}
		o, verrs := v.Validate(ctx, path, i, obj, old)
		if len(verrs) > 0 {
			errs = append(errs, verrs...)
			continue
		}
		if first, dup := seen[o.Key()]; dup {
			errs = append(errs, &Error{File: path, Index: i, Field: "metadata.name", Reason: fmt.Sprintf("Duplicate value: %q: %s is also defined by document %d of this file", o.Name(), o.Key(), first+1)})
			continue
		}
		seen[o.Key()] = i
		objects = append(objects, o)
	}
	return objects, errs
}
