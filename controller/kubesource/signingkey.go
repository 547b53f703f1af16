package kubesource

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/outpostdata/outpost/usageexport"
)

// The site's usage signing key lives in this Secret, in the controller's
// namespace, under SigningKeySecretKey as PKCS#8 PEM: the same bytes the
// single host keeps in <state>/usage/signing.key.
const (
	SigningKeySecretName = "outpost-usage-signing-key"
	SigningKeySecretKey  = "signing.key"
)

// EnsureSigningKey returns the site's signing key from its Secret in
// namespace, creating the Secret with a new key if there is none. Two
// replicas starting at once both try to create it; the one that loses reads
// the winner's, so the site never signs with two keys. The key is never
// logged; errors name the Secret only.
func EnsureSigningKey(ctx context.Context, c client.Client, reader client.Reader, namespace string) (usageexport.SigningKey, error) {
	key, err := LoadSigningKey(ctx, reader, namespace)
	if err == nil || !apierrors.IsNotFound(err) {
		return key, err
	}
	pemBytes, key, err := usageexport.NewKeyPEM()
	if err != nil {
		return key, err
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: SigningKeySecretName, Namespace: namespace, Labels: map[string]string{
			ManagedByLabel: ManagedByValue, "app.kubernetes.io/component": "usage-signing-key",
		}},
		Type:      corev1.SecretTypeOpaque,
		Immutable: ptr.To(true),
		Data:      map[string][]byte{SigningKeySecretKey: pemBytes},
	}
	err = c.Create(ctx, s)
	if apierrors.IsAlreadyExists(err) {
		return LoadSigningKey(ctx, reader, namespace)
	}
	if err != nil {
		return usageexport.SigningKey{}, fmt.Errorf("create usage signing key Secret %s/%s: %w", namespace, SigningKeySecretName, err)
	}
	return key, nil
}

// LoadSigningKey reads the site's signing key from its Secret in namespace.
// A missing Secret is returned as the API's NotFound error, wrapped.
func LoadSigningKey(ctx context.Context, reader client.Reader, namespace string) (usageexport.SigningKey, error) {
	var s corev1.Secret
	if err := reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: SigningKeySecretName}, &s); err != nil {
		return usageexport.SigningKey{}, fmt.Errorf("usage signing key Secret %s/%s: %w", namespace, SigningKeySecretName, err)
	}
	b, ok := s.Data[SigningKeySecretKey]
	if !ok {
		return usageexport.SigningKey{}, fmt.Errorf("usage signing key Secret %s/%s has no key %q", namespace, SigningKeySecretName, SigningKeySecretKey)
	}
	return usageexport.ParseKeyPEM("Secret "+namespace+"/"+SigningKeySecretName, b)
}
