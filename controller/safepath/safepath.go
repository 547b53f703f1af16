// Package safepath builds file paths from names that came from a manifest
// (namespaces, object names, Secret keys) and refuses any that would leave
// the directory they are meant to be under. On a single host, names become
// path components (secrets/NAMESPACE/NAME/KEY, instances/NAMESPACE/NAME);
// a name such as "../../etc" must never make root read, write or chown a
// file elsewhere, even if it slipped past admission.
//
// It is the one place such paths are checked; callers build every
// name-derived path with Join.
package safepath

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Part is one path component. Field names where a name came from (for
// example "spec.caSecret.name"), so that a refusal points at it; fixed
// components of the layout ("secrets") leave it empty.
type Part struct {
	Field string
	Value string
}

// Fixed is a component of the directory layout itself.
func Fixed(value string) Part { return Part{Value: value} }

// Join returns root joined with parts. Each part must be exactly one plain
// path component: not empty, not "." or "..", without a slash or NUL. The
// result is checked once more to be inside root. The error names the field
// of the first offending part.
func Join(root string, parts ...Part) (string, error) {
	elems := []string{root}
	for _, p := range parts {
		if p.Value == "" || p.Value == "." || p.Value == ".." || strings.ContainsAny(p.Value, "/\\\x00") {
			return "", fmt.Errorf("%s: %q is not a plain name; a path built from it would leave %s", fieldOf(p), p.Value, root)
		}
		elems = append(elems, p.Value)
	}
	path := filepath.Join(elems...)
	rel, err := filepath.Rel(filepath.Clean(root), path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return "", fmt.Errorf("%s leaves %s", path, root)
	}
	return path, nil
}

func fieldOf(p Part) string {
	if p.Field == "" {
		return "path component"
	}
	return p.Field
}
