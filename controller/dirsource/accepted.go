package dirsource

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/outpostdata/outpost/controller/controldb"
	"github.com/outpostdata/outpost/controller/manifest"
)

// Accepted returns a copy of the object of kind namespace/name as this
// source holds it now: the one the last pass accepted from its manifest,
// or, while that manifest cannot be read (a half-saved edit, a typo), the
// last one accepted from it, which the pass keeps rather than deleting.
// Lookups made while the controller runs (the ObjectStore of an instance's
// backups, the instance of a Backup) answer from here: re-reading the
// directory for each would validate every manifest again, and would not
// see what a troubled file last declared. Before the first pass, nothing is
// accepted.
func (c *Controller) Accepted(kind, namespace, name string) (manifest.Object, bool) {
	m := c.accepted.Load()
	if m == nil {
		return manifest.Object{}, false
	}
	o, ok := (*m)[manifest.Key(kind, namespace, name)]
	if !ok {
		return manifest.Object{}, false
	}
	o.Unstructured = o.Unstructured.DeepCopy()
	return o, true
}

// accept records what a pass found in the directory, with the stored
// objects of troubled files, for Accepted. It runs before the pass
// reconciles anything, so lookups made while reconciling see this pass's
// objects.
func (c *Controller) accept(d Desired, stored []controldb.Record) {
	m := make(map[string]manifest.Object, len(d.Objects))
	for k, o := range d.Objects {
		m[k] = o
	}
	for _, r := range stored {
		k := recordKey(r)
		if _, ok := m[k]; ok || !d.Troubled[r.SourceFile] {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(r.Object); err != nil {
			c.log.Error("stored object cannot be read", "object", k, "err", err)
			continue
		}
		m[k] = manifest.Object{File: r.SourceFile, Unstructured: u}
	}
	c.accepted.Store(&m)
}
