package dirsource

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/manifest"
)

// Desired is what the manifests directory asks for at one moment.
type Desired struct {
	// Objects are the valid objects by Key.
	Objects map[string]manifest.Object
	// Errors are the invalid documents, and objects defined twice.
	Errors []*manifest.Error
	// Troubled holds files with at least one error: objects last seen in
	// them are kept as they were, not deleted.
	Troubled map[string]bool
	// DataController is the site's one DataController, or nil.
	DataController *outpostv1.DataController
}

// IsManifest reports whether a file name is one the source reads: YAML or
// JSON, not hidden (editors' and `outpost apply`'s temporary files are).
func IsManifest(name string) bool {
	if strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") {
		return false
	}
	switch filepath.Ext(name) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// Read validates every manifest in dir. olds returns the previously
// accepted version of an object, for CEL transition rules; it may be nil.
func Read(ctx context.Context, dir string, v *manifest.Validator, olds func(string) *unstructured.Unstructured) (Desired, error) {
	d := Desired{Objects: map[string]manifest.Object{}, Troubled: map[string]bool{}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return d, fmt.Errorf("read manifests directory: %w", err)
	}
	var files []string
	for _, e := range entries {
		if e.Type().IsRegular() && IsManifest(e.Name()) {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(files)
	for _, f := range files {
		objs, errs := v.ParseFile(ctx, f, olds)
		for _, e := range errs {
			d.Errors = append(d.Errors, e)
			d.Troubled[f] = true
		}
		for _, o := range objs {
			if first, dup := d.Objects[o.Key()]; dup {
				d.Errors = append(d.Errors, &manifest.Error{File: f, Index: o.Index, Field: "metadata.name",
					Reason: fmt.Sprintf("%s is already defined in %s", o.Key(), first.File)})
				d.Troubled[f] = true
				continue
			}
			if o.Kind() == outpostv1.KindDataController {
				if d.DataController != nil {
					d.Errors = append(d.Errors, &manifest.Error{File: f, Index: o.Index, Field: "metadata.name",
						Reason: fmt.Sprintf("a site has one DataController, and %s/%s is it", d.DataController.Namespace, d.DataController.Name)})
					d.Troubled[f] = true
					continue
				}
				dc := &outpostv1.DataController{}
				if err := o.Into(dc); err != nil {
					return d, err
				}
				d.DataController = dc
			}
			d.Objects[o.Key()] = o
		}
	}
	return d, nil
}
