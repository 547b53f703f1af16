package singlehost

import (
	"context"
	"errors"
	"fmt"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/localruntime"
)

// FeatureStoreDatabase finds a FeatureStore the controller accepted (see
// commandLookup) and returns it with a superuser URI for its database, from
// its instance's credentials file. The controller must have reconciled the
// store for its tables to exist; `outpost up` does that.
func FeatureStoreDatabase(ctx context.Context, sd StateDir, namespace, name string) (*outpostv1.FeatureStore, string, error) {
	if err := sd.mustExist(); err != nil {
		return nil, "", err
	}
	l, done, err := sd.commandLookup(ctx)
	if err != nil {
		return nil, "", err
	}
	defer done()
	fs := &outpostv1.FeatureStore{}
	if err := l(ctx, "FeatureStore", namespace, name, fs); errors.As(err, new(notDeclaredError)) {
		return nil, "", fmt.Errorf("%w (outpost apply -f featurestore.yaml)", err)
	} else if err != nil {
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
