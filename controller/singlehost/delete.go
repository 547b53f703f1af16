package singlehost

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

// Delete removes an object's manifest from the manifests directory; the
// controller then stops what it runs. It refuses when the file defines other
// objects too, rather than rewrite a file the user wrote.
func Delete(ctx context.Context, sd StateDir, kind, namespace, name string, out io.Writer) error {
	_, d, err := sd.readManifests(ctx)
	if err != nil {
		return err
	}
	key := kind + "/" + namespace + "/" + name
	obj, ok := d.Objects[key]
	if !ok {
		return fmt.Errorf("%s %s/%s not found in %s", kind, namespace, name, sd.Manifests())
	}
	for k, o := range d.Objects {
		if k != key && o.File == obj.File {
			return fmt.Errorf("%s is defined in %s together with %s; remove it from that file instead", key, obj.File, k)
		}
	}
	if err := os.Remove(obj.File); err != nil {
		return err
	}
	what := strings.ToLower(kind) + "/" + name
	if kind == outpostv1.KindPostgresInstance {
		policy := str(obj.Unstructured.Object, "spec", "deletionPolicy")
		fmt.Fprintf(out, "%s deleted (removed %s); the controller stops it and, by deletionPolicy %s, %s its data\n",
			what, obj.File, policy, map[bool]string{true: "removes", false: "keeps"}[policy == "Delete"])
		return nil
	}
	fmt.Fprintf(out, "%s deleted (removed %s)\n", what, obj.File)
	return nil
}
