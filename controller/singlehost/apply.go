package singlehost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/outpostdata/outpost/controller/manifest"
	"github.com/outpostdata/outpost/controller/safepath"
)

// Apply validates the manifests in data (read from source, a path or "-")
// exactly as the controller will, and writes each object into the manifests
// directory: over the file that already defines it, or into a new file. If
// any document is invalid, nothing is written.
func Apply(ctx context.Context, sd StateDir, source string, data []byte, out io.Writer) error {
	validator, current, err := sd.readManifests(ctx)
	if err != nil {
		return err
	}
	olds := func(key string) *unstructured.Unstructured {
		if o, ok := current.Objects[key]; ok {
			return o.Unstructured
		}
		return nil
	}
	objs, errs := validator.ParseBytes(ctx, source, data, olds)
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return fmt.Errorf("nothing applied:\n  %s", strings.Join(msgs, "\n  "))
	}
	if len(objs) == 0 {
		return fmt.Errorf("%s holds no objects", source)
	}

	perFile := map[string]int{}
	for _, o := range current.Objects {
		perFile[o.File]++
	}
	type write struct {
		obj     manifest.Object
		path    string
		created bool
	}
	var writes []write
	for _, o := range objs {
		w := write{obj: o}
		if existing, ok := current.Objects[o.Key()]; ok {
			if perFile[existing.File] > 1 {
				return fmt.Errorf("%s is defined in %s together with other objects; edit that file instead (nothing applied)", o.Key(), existing.File)
			}
			w.path = existing.File
		} else {
			path, err := safepath.Join(sd.Manifests(), safepath.Part{Field: "metadata.name", Value: fileName(o)})
			if err != nil {
				return fmt.Errorf("%s: %w (nothing applied)", o.Key(), err)
			}
			w.path, w.created = path, true
			if _, err := os.Stat(w.path); err == nil {
				return fmt.Errorf("%s already exists and does not define %s; move it away or edit it (nothing applied)", w.path, o.Key())
			}
		}
		writes = append(writes, w)
	}
	for _, w := range writes {
		b, err := yaml.Marshal(w.obj.Unstructured.Object)
		if err != nil {
			return err
		}
		if err := writeAtomic(w.path, b); err != nil {
			return fmt.Errorf("write %s: %w", w.path, err)
		}
		verb := "configured"
		if w.created {
			verb = "created"
		}
		fmt.Fprintf(out, "%s/%s %s (%s)\n", strings.ToLower(w.obj.Kind()), w.obj.Name(), verb, w.path)
	}
	return nil
}

// fileName is where a new object goes: kind and name, and the namespace
// when it is not the default one.
func fileName(o manifest.Object) string {
	name := strings.ToLower(o.Kind()) + "-" + o.Name()
	if o.Namespace() != "default" {
		name = strings.ToLower(o.Kind()) + "-" + o.Namespace() + "-" + o.Name()
	}
	return name + ".yaml"
}

// writeAtomic writes through a hidden temporary file and a rename, so the
// controller never reads half a manifest.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".apply-*.tmp")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	err = errors.Join(err, tmp.Close())
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}
