package kuberuntime

import (
	"context"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/outpostdata/outpost/backup"
	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

// ResolveObjectStore resolves an ObjectStore on Kubernetes: the access key from
// spec.credentials.secret and the CA bundle from spec.caSecret. Both are
// read straight from the API (reader): the manager caches only Outpost's
// own Secrets, and these belong to the user. The CA goes into a temporary
// file that done removes.
func ResolveObjectStore(ctx context.Context, reader client.Reader, os_ *outpostv1.ObjectStore) (cfg backup.StoreConfig, done func(), err error) {
	done = func() {}
	s := os_.Spec
	cfg = controller.ObjectStoreConfig(os_)
	if s.Credentials.Secret == nil {
		return cfg, done, fmt.Errorf("ObjectStore %s/%s: spec.credentials: on Kubernetes set credentials.secret (file and fromEnvironment are for a single host)", os_.Namespace, os_.Name)
	}
	secretValue := func(field, name, key string) ([]byte, error) {
		sec := &corev1.Secret{}
		if err := reader.Get(ctx, types.NamespacedName{Namespace: os_.Namespace, Name: name}, sec); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("ObjectStore %s/%s: %s: Secret %s does not exist", os_.Namespace, os_.Name, field, name)
			}
			return nil, fmt.Errorf("ObjectStore %s/%s: %s: %w", os_.Namespace, os_.Name, field, err)
		}
		v := sec.Data[key]
		if len(v) == 0 {
			return nil, fmt.Errorf("ObjectStore %s/%s: %s: Secret %s has no key %q", os_.Namespace, os_.Name, field, name, key)
		}
		return v, nil
	}
	name := s.Credentials.Secret.Name
	ak, err := secretValue("spec.credentials.secret", name, KeyAccessKeyID)
	if err != nil {
		return cfg, done, err
	}
	sk, err := secretValue("spec.credentials.secret", name, KeySecretAccessKey)
	if err != nil {
		return cfg, done, err
	}
	cfg.AccessKey, cfg.SecretKey = string(ak), string(sk)
	if s.CASecret != nil {
		pem, err := secretValue("spec.caSecret", s.CASecret.Name, KeyCA)
		if err != nil {
			return cfg, done, err
		}
		f, err := os.CreateTemp("", "outpost-ca-*.pem")
		if err != nil {
			return cfg, done, err
		}
		done = func() { os.Remove(f.Name()) }
		if _, err := f.Write(pem); err != nil {
			f.Close()
			return cfg, done, err
		}
		if err := f.Close(); err != nil {
			return cfg, done, err
		}
		cfg.CAFile = f.Name()
	}
	return cfg, done, nil
}

// openStore opens the ObjectStore name in namespace.
func openStore(ctx context.Context, c client.Reader, reader client.Reader, namespace, name string) (*backup.Store, error) {
	os_ := &outpostv1.ObjectStore{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, os_); err != nil {
		return nil, fmt.Errorf("ObjectStore %s/%s: %w", namespace, name, err)
	}
	cfg, done, err := ResolveObjectStore(ctx, reader, os_)
	defer done()
	if err != nil {
		return nil, err
	}
	return backup.Open(ctx, cfg)
}
