package kubesource

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/outpostdata/outpost/controller/kuberuntime"
	"github.com/outpostdata/outpost/postgres"
)

// ControlDBTLSSecretName is the Secret holding the chart's controldb's
// server certificate (ca.crt, tls.crt, tls.key), which its pod mounts as an
// instance pod mounts its own.
func ControlDBTLSSecretName(name string) string { return name + "-tls" }

// controlDBCertCheck is how often a running controller checks that
// controldb's certificate is far enough from expiry.
const controlDBCertCheck = time.Hour

// ensureControlDBTLS issues controldb's server certificate from the site CA
// into its Secret when it has none, or one about to expire or naming other
// hosts, and returns the CA that verifies it. The kubelet updates the
// mounted files and the instance manager reloads postgres with them.
func ensureControlDBTLS(ctx context.Context, c client.Client, namespace, name string) ([]byte, error) {
	ca, err := kuberuntime.SiteCA(ctx, c, c, namespace)
	if err != nil {
		return nil, fmt.Errorf("controldb TLS: %w", err)
	}
	secretName := ControlDBTLSSecretName(name)
	// The chart's controller replicas start together and race to make (or
	// renew) the Secret: the loser of the race reads the winner's and
	// checks it again, instead of failing its start.
	for attempt := 1; ; attempt++ {
		err = writeControlDBTLS(ctx, c, ca, namespace, name)
		if attempt < 3 && (apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err)) {
			continue
		}
		break
	}
	if err != nil {
		return nil, fmt.Errorf("controldb TLS Secret %s/%s: %w", namespace, secretName, err)
	}
	return ca.CertPEM, nil
}

// writeControlDBTLS creates or updates the Secret once.
func writeControlDBTLS(ctx context.Context, c client.Client, ca *postgres.CA, namespace, name string) error {
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: ControlDBTLSSecretName(name), Namespace: namespace}}
	_, err := controllerutil.CreateOrUpdate(ctx, c, secret, func() error {
		secret.Type = corev1.SecretTypeOpaque
		secret.Labels = map[string]string{"app.kubernetes.io/name": "outpost", "app.kubernetes.io/component": "controldb"}
		if secret.Data == nil {
			secret.Data = map[string][]byte{}
		}
		secret.Data[kuberuntime.KeyCA] = ca.CertPEM
		req := kuberuntime.ServiceCertRequest(name, namespace)
		now := time.Now()
		if ca.Reissue(secret.Data[kuberuntime.KeyTLSCert], req, now) == "" && len(secret.Data[kuberuntime.KeyTLSKey]) > 0 {
			return nil
		}
		cert, key, err := ca.Issue(req, now)
		if err != nil {
			return err
		}
		secret.Data[kuberuntime.KeyTLSCert], secret.Data[kuberuntime.KeyTLSKey] = cert, key
		return nil
	})
	return err
}

// keepControlDBCertFresh renews controldb's certificate while the
// controller runs, so that a controller up for a year does not outlive it.
func keepControlDBCertFresh(ctx context.Context, cfg *rest.Config, namespace, name string, log *slog.Logger) {
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		log.Error("controldb's certificate will not be renewed while the controller runs", "err", err)
		return
	}
	t := time.NewTicker(controlDBCertCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := ensureControlDBTLS(ctx, c, namespace, name); err != nil {
				log.Error("cannot renew controldb's certificate", "err", err)
			}
		}
	}
}

// verifyingURL is raw with sslmode=verify-full and sslrootcert naming a
// file of this process holding ca. Secrets made before controldb served
// TLS say sslmode=disable; the chart that runs this controller serves TLS,
// so they are verified too.
func verifyingURL(raw string, ca []byte) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("controldb URL: %w", err)
	}
	caFile, err := caFileOf(ca)
	if err != nil {
		return "", fmt.Errorf("controldb CA file: %w", err)
	}
	q := u.Query()
	q.Set("sslmode", "verify-full")
	q.Set("sslrootcert", caFile)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// caFiles are the CA files this process wrote, by content: one file per
// CA, so that the URL stays the same however often it is asked for.
var caFiles struct {
	sync.Mutex
	paths map[string]string
}

// caFileOf writes ca to a file in a directory of this process's own (not a
// predictable name in a shared /tmp, which another user could plant first).
func caFileOf(ca []byte) (string, error) {
	caFiles.Lock()
	defer caFiles.Unlock()
	if p, ok := caFiles.paths[string(ca)]; ok {
		return p, nil
	}
	dir, err := os.MkdirTemp("", "outpost-controldb-ca-")
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, kuberuntime.KeyCA)
	if err := os.WriteFile(p, ca, 0o600); err != nil {
		return "", err
	}
	if caFiles.paths == nil {
		caFiles.paths = map[string]string{}
	}
	caFiles.paths[string(ca)] = p
	return p, nil
}
