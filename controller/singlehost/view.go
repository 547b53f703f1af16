package singlehost

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/controldb"
	"github.com/outpostdata/outpost/controller/dirsource"
	"github.com/outpostdata/outpost/controller/manifest"
)

// kindAliases maps what people type (`outpost get pgi`) to kinds.
var kindAliases = map[string]string{
	"postgresinstance": outpostv1.KindPostgresInstance, "postgresinstances": outpostv1.KindPostgresInstance, "pgi": outpostv1.KindPostgresInstance,
	"instance": outpostv1.KindPostgresInstance, "instances": outpostv1.KindPostgresInstance,
	"featurestore": outpostv1.KindFeatureStore, "featurestores": outpostv1.KindFeatureStore, "fs": outpostv1.KindFeatureStore,
	"objectstore": outpostv1.KindObjectStore, "objectstores": outpostv1.KindObjectStore, "os": outpostv1.KindObjectStore,
	"backup": outpostv1.KindBackup, "backups": outpostv1.KindBackup,
	"datacontroller": outpostv1.KindDataController, "datacontrollers": outpostv1.KindDataController, "dc": outpostv1.KindDataController,
}

// ResolveKind turns a user's kind name into a kind; "all" is "".
func ResolveKind(name string) (string, error) {
	if strings.ToLower(name) == "all" {
		return "", nil
	}
	if k, ok := kindAliases[strings.ToLower(name)]; ok {
		return k, nil
	}
	return "", fmt.Errorf("unknown kind %q: use instances (pgi), featurestores (fs), objectstores, backups, datacontrollers or all", name)
}

// entry is one object as `get` and `describe` show it.
type entry struct {
	Kind, Namespace, Name string
	// File is the manifest that defines it; empty when the manifest is gone
	// and the controller has yet to finish deleting it.
	File string
	// Object is the stored object with status when the controller has seen
	// this spec, else the manifest as validated.
	Object *unstructured.Unstructured
	// Reconciled is true when Object came from the controller.
	Reconciled bool
}

func (e entry) key() string { return e.Kind + "/" + e.Namespace + "/" + e.Name }

// Phase is status.phase, or what the Ready condition says for kinds without
// a phase, or where the object is in its life.
func (e entry) Phase() string {
	switch {
	case e.File == "":
		return "Deleting"
	case !e.Reconciled:
		return "Pending"
	}
	if p, ok, _ := unstructured.NestedString(e.Object.Object, "status", "phase"); ok && p != "" {
		return p
	}
	conds, _, _ := unstructured.NestedSlice(e.Object.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Ready" {
			if m["status"] == "True" {
				return "Ready"
			}
			return "NotReady"
		}
	}
	return "Accepted"
}

// view is the manifests directory joined with what controldb knows.
type view struct {
	entries        []entry
	manifestErrors []string
	// controllerDown says why no status could be read, if none could.
	controllerDown string
}

// loadView reads the manifests and, when the controller's controldb is
// reachable, the status of every object in it. Manifests are validated as
// the controller validates them, against the objects it has accepted.
func loadView(ctx context.Context, sd StateDir) (view, error) {
	var v view
	if err := sd.mustExist(); err != nil {
		return v, err
	}
	stored := map[string]*unstructured.Unstructured{}
	storedFile := map[string]string{}
	db, err := controldb.ConnectLocal(ctx, sd.ControlDB())
	if err != nil {
		v.controllerDown = "the controller is not running (start it with `outpost up`); showing manifests only"
	} else {
		defer db.Close()
		recs, err := db.Objects(ctx, "")
		if err != nil {
			return v, err
		}
		for _, r := range recs {
			u := &unstructured.Unstructured{}
			if err := u.UnmarshalJSON(r.Object); err != nil {
				return v, fmt.Errorf("stored %s/%s/%s: %w", r.Kind, r.Namespace, r.Name, err)
			}
			stored[r.Kind+"/"+r.Namespace+"/"+r.Name] = u
			storedFile[r.Kind+"/"+r.Namespace+"/"+r.Name] = r.SourceFile
		}
	}

	validator, err := manifest.NewValidator()
	if err != nil {
		return v, err
	}
	d, err := dirsource.Read(ctx, sd.Manifests(), validator, func(key string) *unstructured.Unstructured { return stored[key] })
	if err != nil {
		return v, err
	}
	for _, e := range d.Errors {
		v.manifestErrors = append(v.manifestErrors, e.Error())
	}
	byKey := map[string]*entry{}
	for k, o := range d.Objects {
		e := &entry{Kind: o.Kind(), Namespace: o.Namespace(), Name: o.Name(), File: o.File, Object: o.Unstructured}
		if s, ok := stored[k]; ok && sameSpec(s, o.Unstructured) {
			e.Object, e.Reconciled = s, true
		}
		byKey[k] = e
	}
	for k, s := range stored {
		if _, ok := byKey[k]; !ok {
			e := &entry{Kind: s.GetKind(), Namespace: s.GetNamespace(), Name: s.GetName(), Object: s, Reconciled: true}
			// A manifest that does not parse right now still defines what it
			// did; the controller keeps the object as it was.
			if d.Troubled[storedFile[k]] {
				e.File = storedFile[k]
			}
			byKey[k] = e
		}
	}
	for _, e := range byKey {
		v.entries = append(v.entries, *e)
	}
	sort.Slice(v.entries, func(i, j int) bool { return v.entries[i].key() < v.entries[j].key() })
	return v, nil
}

// sameSpec reports whether the controller has seen this spec, so its status
// describes it.
func sameSpec(a, b *unstructured.Unstructured) bool {
	x, _ := json.Marshal(a.Object["spec"])
	y, _ := json.Marshal(b.Object["spec"])
	return string(x) == string(y)
}

// find returns the entry of kind/namespace/name.
func (v view) find(kind, namespace, name string) (entry, bool) {
	for _, e := range v.entries {
		if e.Kind == kind && e.Namespace == namespace && e.Name == name {
			return e, true
		}
	}
	return entry{}, false
}
