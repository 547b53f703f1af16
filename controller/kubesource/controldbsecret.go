package kubesource

import (
	"context"
	"fmt"
	"net/url"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/outpostdata/outpost/postgres"
)

// Keys of the controldb Secret. The chart's controldb pod reads the two
// passwords from it; the controller reads the URL.
const (
	ControlDBSuperuserPasswordKey = "superuser-password"
	ControlDBPasswordKey          = "password"
	ControlDBURLKey               = "url"
)

// ControlDBSecretURL returns the URL of the in-chart controldb, whose
// Service and Secret are both named name in namespace. The controller
// creates the Secret with fresh passwords when it does not exist yet, and
// reads it ever after: the passwords never pass through a chart render
// (where `helm template`, Argo CD and Flux would change them on every
// render, away from the data directory's), and never appear in one.
//
// controldb serves TLS with a certificate from the site CA, kept in the
// Secret name-tls (see ensureControlDBTLS), and the URL verifies it
// (sslmode=verify-full) with the CA written to a file of this process.
func ControlDBSecretURL(ctx context.Context, cfg *rest.Config, namespace, name string) (string, error) {
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return "", fmt.Errorf("controldb Secret %s/%s: %w", namespace, name, err)
	}
	raw, err := ensureControlDBSecret(ctx, c, namespace, name)
	if err != nil {
		return "", err
	}
	ca, err := ensureControlDBTLS(ctx, c, namespace, name)
	if err != nil {
		return "", err
	}
	return verifyingURL(raw, ca)
}

func ensureControlDBSecret(ctx context.Context, c client.Client, namespace, name string) (string, error) {
	key := client.ObjectKey{Namespace: namespace, Name: name}
	var s corev1.Secret
	err := c.Get(ctx, key, &s)
	if apierrors.IsNotFound(err) {
		app := postgres.GeneratePassword()
		u := url.URL{Scheme: "postgres", User: url.UserPassword("outpost", app),
			Host: name + "." + namespace + ".svc:5432", Path: "/outpost", RawQuery: "sslmode=verify-full"}
		s = corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace,
				Labels: map[string]string{"app.kubernetes.io/name": "outpost", "app.kubernetes.io/component": "controldb"}},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{
				ControlDBSuperuserPasswordKey: []byte(postgres.GeneratePassword()),
				ControlDBPasswordKey:          []byte(app),
				ControlDBURLKey:               []byte(u.String()),
			},
		}
		err = c.Create(ctx, &s)
		if apierrors.IsAlreadyExists(err) { // another replica was first: use its
			err = c.Get(ctx, key, &s)
		}
	}
	if err != nil {
		return "", fmt.Errorf("controldb Secret %s/%s: %w", namespace, name, err)
	}
	u := string(s.Data[ControlDBURLKey])
	if u == "" {
		return "", fmt.Errorf("controldb Secret %s/%s has no %q key", namespace, name, ControlDBURLKey)
	}
	return u, nil
}
