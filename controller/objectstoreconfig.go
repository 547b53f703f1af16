package controller

import (
	"github.com/outpostdata/outpost/backup"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

// ObjectStoreConfig is where an ObjectStore's bucket is: everything the
// backup package connects with but the access keys and the CA bundle file,
// which each runtime finds its own way (Secrets on Kubernetes, files or the
// environment on one host). Every runtime starts from it, so a field added
// to the spec reaches them all.
func ObjectStoreConfig(store *outpostv1.ObjectStore) backup.StoreConfig {
	s := store.Spec
	return backup.StoreConfig{Endpoint: s.Endpoint, Bucket: s.Bucket, Prefix: s.Prefix, Region: s.Region, CreateBucket: s.CreateBucket}
}
