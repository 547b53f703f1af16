package kuberuntime

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/postgres"
)

// CASecretName is the Secret in the controller's namespace that holds the
// site CA (ca.crt and its key, ca.key). The controller creates it when it
// first needs it; only the controller reads it.
const CASecretName = "outpost-ca"

// KeyCAKey is the CA's private key in CASecretName.
const KeyCAKey = "ca.key"

// siteCA reads the site CA from its Secret, creating it the first time.
func (r *Runtime) siteCA(ctx context.Context) (*postgres.CA, error) {
	r.caMu.Lock()
	defer r.caMu.Unlock()
	if r.ca != nil {
		return r.ca, nil
	}
	ca, err := SiteCA(ctx, r.Client, r.reader(), r.namespace())
	if err != nil {
		return nil, err
	}
	r.ca = ca
	return ca, nil
}

// SiteCA reads the site CA from its Secret in namespace (the controller's),
// creating it the first time. Instances and the chart's controldb get their
// server certificates from it, so one CA file verifies them all.
func SiteCA(ctx context.Context, c client.Client, reader client.Reader, namespace string) (*postgres.CA, error) {
	key := types.NamespacedName{Namespace: namespace, Name: CASecretName}
	secret := &corev1.Secret{}
	err := reader.Get(ctx, key, secret)
	if apierrors.IsNotFound(err) {
		var ca *postgres.CA
		if ca, err = postgres.NewCA("Outpost site CA "+key.Namespace, time.Now()); err != nil {
			return nil, err
		}
		secret = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: CASecretName, Namespace: key.Namespace, Labels: map[string]string{labelManagedBy: "outpost"}},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{KeyCA: ca.CertPEM, KeyCAKey: ca.KeyPEM()},
		}
		err = c.Create(ctx, secret)
		if apierrors.IsAlreadyExists(err) {
			// Another controller made it first: use theirs.
			err = reader.Get(ctx, key, secret)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("site CA Secret %s: %w", key, err)
	}
	ca, err := postgres.ParseCA(secret.Data[KeyCA], secret.Data[KeyCAKey])
	if err != nil {
		return nil, fmt.Errorf("site CA Secret %s: %w", key, err)
	}
	return ca, nil
}

// namespace is the controller's namespace, "default" when unset.
func (r *Runtime) namespace() string {
	if r.Namespace == "" {
		return "default"
	}
	return r.Namespace
}

// serverCertRequest names everything clients reach an instance by: its
// Service's DNS names, and localhost inside the pod.
func serverCertRequest(inst *outpostv1.PostgresInstance) postgres.CertRequest {
	return ServiceCertRequest(ServiceName(inst), inst.Namespace)
}

// ServiceCertRequest is a server certificate for a PostgreSQL behind the
// Service svc in namespace: every DNS name the Service is reached by, and
// localhost inside the pod.
func ServiceCertRequest(svc, namespace string) postgres.CertRequest {
	host := svc + "." + namespace + ".svc"
	return postgres.CertRequest{
		CommonName: host,
		DNSNames:   []string{svc, svc + "." + namespace, host, host + ".cluster.local", "localhost"},
		IPs:        []net.IP{net.IPv4(127, 0, 0, 1).To4()},
	}
}

// clientCert returns the files of the controller's client certificate for
// the superuser, issued by the site CA into CertDir, and issued again
// before it expires. PostgreSQL admits the superuser over the network with
// nothing else.
func (r *Runtime) clientCert(ctx context.Context) (caFile, certFile, keyFile string, err error) {
	ca, err := r.siteCA(ctx)
	if err != nil {
		return "", "", "", err
	}
	r.caMu.Lock()
	defer r.caMu.Unlock()
	if r.CertDir == "" {
		if r.CertDir, err = os.MkdirTemp("", "outpost-client-cert-"); err != nil {
			return "", "", "", fmt.Errorf("client certificate directory: %w", err)
		}
	}
	caFile, certFile, keyFile = filepath.Join(r.CertDir, "ca.crt"), filepath.Join(r.CertDir, "superuser.crt"), filepath.Join(r.CertDir, "superuser.key")
	req := postgres.CertRequest{CommonName: postgres.Superuser, Client: true}
	current, _ := os.ReadFile(certFile)
	if ca.Reissue(current, req, time.Now()) == "" {
		return caFile, certFile, keyFile, nil
	}
	cert, key, err := ca.Issue(req, time.Now())
	if err != nil {
		return "", "", "", err
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{caFile, ca.CertPEM}, {keyFile, key}, {certFile, cert}} {
		if err := os.WriteFile(f.path+".tmp", f.data, 0o600); err != nil {
			return "", "", "", fmt.Errorf("client certificate: %w", err)
		}
		if err := os.Rename(f.path+".tmp", f.path); err != nil {
			return "", "", "", fmt.Errorf("client certificate: %w", err)
		}
	}
	return caFile, certFile, keyFile, nil
}
