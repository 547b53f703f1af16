package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/outpostdata/outpost/controller/instancemanager"
	"github.com/outpostdata/outpost/controller/kuberuntime"
	"github.com/outpostdata/outpost/controller/kubesource"
	"github.com/outpostdata/outpost/postgres"
	"github.com/outpostdata/outpost/test/harness"
)

// The chart's controldb holds every instance's usage and the controller's
// state; the controller reaches it over the cluster network. It serves TLS
// with a certificate the controller issues from the site CA, and the
// controller's URL verifies it. Here the controldb pod is `outpost instance
// run` as a local process with the chart's command line, its Secrets'
// files laid out as the kubelet mounts them.
func TestChartControlDBServesTLSThatTheControllerVerifies(t *testing.T) {
	api := harness.StartAPIServer(t)
	ctx := context.Background()
	const ns, name = "outpost-system", "outpost-controldb"
	if err := api.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	raw, err := kubesource.ControlDBSecretURL(ctx, api.Config, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if q := u.Query(); q.Get("sslmode") != "verify-full" || q.Get("sslrootcert") == "" {
		t.Fatalf("the controller's controldb URL does not verify the server: %s", u.Redacted())
	}
	secret := func(name string) map[string][]byte {
		var s corev1.Secret
		if err := api.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
			t.Fatal(err)
		}
		return s.Data
	}
	passwords, certs := secret(name), secret(kubesource.ControlDBTLSSecretName(name))
	var ca corev1.Secret
	if err := api.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: kuberuntime.CASecretName}, &ca); err != nil {
		t.Fatal(err)
	}
	if string(certs[kuberuntime.KeyCA]) != string(ca.Data[kuberuntime.KeyCA]) {
		t.Fatal("controldb's ca.crt is not the site CA")
	}

	p := startManager(t, func(p *managerProcess) []string {
		for k, v := range certs {
			if err := os.WriteFile(filepath.Join(p.tlsDir, k), v, 0o440); err != nil {
				t.Fatal(err)
			}
		}
		// The chart's ConfigMap, on a free port.
		b, _ := json.Marshal(map[string]any{"port": p.pgPort, "database": "outpost", "owner": "outpost"})
		if err := os.WriteFile(p.configFile, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return []string{instancemanager.EnvSuperuserPassword + "=" + string(passwords[kubesource.ControlDBSuperuserPasswordKey]),
			instancemanager.EnvAppPassword + "=" + string(passwords[kubesource.ControlDBPasswordKey])}
	})
	waitFor(t, 2*time.Minute, "controldb /readyz 200", func() bool { code, _ := p.get("/readyz"); return code == 200 })

	// The Service's name does not resolve without a cluster; the
	// certificate also names localhost, as an instance's does.
	u.Host = net.JoinHostPort("localhost", strconv.Itoa(p.pgPort))
	connect := func(u *url.URL) (*pgx.Conn, error) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return pgx.Connect(cctx, u.String())
	}
	conn, err := connect(u)
	if err != nil {
		t.Fatalf("the controller's URL: %v\nmanager log:\n%s", err, p.logTail())
	}
	defer conn.Close(ctx)
	var ssl bool
	if err := conn.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
		t.Fatalf("pg_stat_ssl of the controller's connection: ssl=%v, %v", ssl, err)
	}

	// The controls: without TLS, and verified against another CA, the
	// same credentials are refused.
	plain := *u
	q := plain.Query()
	q.Set("sslmode", "disable")
	q.Del("sslrootcert")
	plain.RawQuery = q.Encode()
	if c, err := connect(&plain); err == nil {
		c.Close(ctx)
		t.Error("controldb accepted the controller's password without TLS")
	} else if !strings.Contains(err.Error(), "no encryption") {
		t.Errorf("without TLS: %v, want refused for no encryption", err)
	}
	other, err := postgres.NewCA("another site", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	otherFile := filepath.Join(t.TempDir(), "other.crt")
	if err := os.WriteFile(otherFile, other.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	wrongCA := *u
	q = wrongCA.Query()
	q.Set("sslrootcert", otherFile)
	wrongCA.RawQuery = q.Encode()
	if c, err := connect(&wrongCA); err == nil {
		c.Close(ctx)
		t.Error("the controller's URL verified controldb with another site's CA")
	}

	// A second start keeps a good certificate, and replaces one that names
	// other hosts (as one would after the release was renamed).
	if _, err := kubesource.ControlDBSecretURL(ctx, api.Config, ns, name); err != nil {
		t.Fatal(err)
	}
	if string(secret(kubesource.ControlDBTLSSecretName(name))[kuberuntime.KeyTLSCert]) != string(certs[kuberuntime.KeyTLSCert]) {
		t.Error("a second controller start replaced a certificate that was still good")
	}
	wrongName, _, err := other.Issue(postgres.CertRequest{CommonName: "elsewhere", DNSNames: []string{"elsewhere"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var s corev1.Secret
	if err := api.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: kubesource.ControlDBTLSSecretName(name)}, &s); err != nil {
		t.Fatal(err)
	}
	s.Data[kuberuntime.KeyTLSCert] = wrongName
	if err := api.Client.Update(ctx, &s); err != nil {
		t.Fatal(err)
	}
	if _, err := kubesource.ControlDBSecretURL(ctx, api.Config, ns, name); err != nil {
		t.Fatal(err)
	}
	if got := secret(kubesource.ControlDBTLSSecretName(name))[kuberuntime.KeyTLSCert]; string(got) == string(wrongName) || string(got) == string(certs[kuberuntime.KeyTLSCert]) {
		t.Error("a certificate for other hosts was not replaced by a new one")
	}
}
