package singlehost

import (
	"context"
	"fmt"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/dirsource"
	"github.com/outpostdata/outpost/controller/localruntime"
	"github.com/outpostdata/outpost/controller/manifest"
)

// FeatureStoreDatabase finds a FeatureStore's manifest in the state
// directory and returns it with a superuser URI for its database, from its
// instance's credentials file. The controller must have reconciled the
// store for its tables to exist; `outpost up` does that.
func FeatureStoreDatabase(ctx context.Context, sd StateDir, namespace, name string) (*outpostv1.FeatureStore, string, error) {
	if err := sd.mustExist(); err != nil {
		return nil, "", err
	}
	v, err := manifest.NewValidator()
	if err != nil {
		return nil, "", err
	}
	d, err := dirsource.Read(ctx, sd.Manifests(), v, nil)
	if err != nil {
		return nil, "", err
	}
	obj, ok := d.Objects[manifest.Key("FeatureStore", namespace, name)]
	if !ok {
		return nil, "", fmt.Errorf("no FeatureStore %s/%s in %s: apply one first (outpost apply -f featurestore.yaml)", namespace, name, sd.Manifests())
	}
	fs := &outpostv1.FeatureStore{}
	if err := obj.Into(fs); err != nil {
		return nil, "", err
	}
	dir, err := sd.Instance(namespace, fs.Spec.Instance.Name)
	if err != nil {
		return nil, "", fmt.Errorf("FeatureStore %s/%s: spec.instance.name: %w", namespace, name, err)
	}
	u, err := localruntime.SuperuserURL(dir, fs.Spec.Database)
	if err != nil {
		return nil, "", fmt.Errorf("FeatureStore %s/%s: instance %s: %w (is `outpost up` running, and the instance Ready?)", namespace, name, fs.Spec.Instance.Name, err)
	}
	return fs, u, nil
}
