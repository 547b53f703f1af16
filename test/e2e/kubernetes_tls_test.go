package e2e

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/kuberuntime"
	"github.com/outpostdata/outpost/controller/kubesource"
	"github.com/outpostdata/outpost/postgres"
	"github.com/outpostdata/outpost/test/harness"
)

// On Kubernetes the instance's pod serves TLS with a certificate from the
// site CA Secret; the app Secret carries what a client needs and no
// superuser password; the controller reaches the superuser with its client
// certificate only.
func TestKubernetesInstanceServesTLSAndSplitsItsSecrets(t *testing.T) {
	api := harness.StartAPIServer(t)
	c := api.Client
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	var pod *instancePod
	podReady := make(chan struct{})
	newRuntime := func(cl client.Client, s *runtime.Scheme) *kuberuntime.Runtime {
		return &kuberuntime.Runtime{Client: cl, Reader: c, Scheme: s, Log: slog.New(slog.DiscardHandler), Namespace: "outpost-system",
			Pods: kuberuntime.PodOptions{Image: "outpost/instance:test"},
			// Service names do not resolve without a cluster: the pod's
			// port is on loopback, and its certificate names localhost.
			DatabaseEndpoint: func(*outpostv1.PostgresInstance) (string, int) { <-podReady; return "localhost", pod.cfg.Port },
		}
	}
	var rt *kuberuntime.Runtime
	mgr, err := kubesource.NewManager(kubesource.Options{
		Config: api.Config, Log: harness.Logger(t), MinRequeue: 2 * time.Second,
		NewRuntime: func(cl client.Client, s *runtime.Scheme) (controller.Runtime, error) {
			rt = newRuntime(cl, s)
			return rt, nil
		},
	})
	must(err)
	must(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "outpost-system"}}))
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() { cancel(); <-done })

	must(c.Create(ctx, &outpostv1.PostgresInstance{ObjectMeta: metav1.ObjectMeta{Name: "tls", Namespace: "default"}, Spec: outpostv1.PostgresInstanceSpec{
		Resources: outpostv1.InstanceResources{CPU: resource.MustParse("1"), Memory: resource.MustParse("512Mi")},
		Storage:   outpostv1.InstanceStorage{Size: resource.MustParse("1Gi")},
	}}))
	pod = startInstancePod(t, c, "tls")
	close(podReady)
	pod.waitReady(t)

	// The app Secret: the role's credentials, a verify-full URI and the CA;
	// no superuser password in any key.
	var app, super, ca corev1.Secret
	must(c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "tls-app"}, &app))
	must(c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "tls-superuser"}, &super))
	must(c.Get(ctx, client.ObjectKey{Namespace: "outpost-system", Name: kuberuntime.CASecretName}, &ca))
	superPassword := string(super.Data[kuberuntime.KeySuperuserPassword])
	for k, v := range app.Data {
		if strings.Contains(string(v), superPassword) {
			t.Errorf("the app Secret's %s holds the superuser password", k)
		}
	}
	if string(app.Data["ca.crt"]) != string(ca.Data["ca.crt"]) || !strings.Contains(string(app.Data["uri"]), "sslmode=verify-full") {
		t.Errorf("app Secret: ca.crt is not the site CA's, or the URI %q does not verify", app.Data["uri"])
	}
	if _, ok := app.Data[kuberuntime.KeySuperuserPassword]; ok {
		t.Error("the app Secret has a superuser-password key")
	}

	// psql verifies the server with the app Secret's CA, as an application
	// would with the Secret mounted.
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	must(os.WriteFile(caFile, app.Data["ca.crt"], 0o644))
	appURL := postgres.ConnURL{Host: "localhost", Port: pod.cfg.Port, User: string(app.Data["username"]),
		Password: string(app.Data["password"]), Database: string(app.Data["database"]), RootCert: caFile}
	psql := func(uri, sql string) (string, error) {
		cmd := exec.Command(harness.SystemBinary(t, "psql"), "-X", "-A", "-t", "-d", uri, "-c", sql)
		cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=5")
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := psql(appURL.String(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"); err != nil || out != "t" {
		t.Fatalf("psql sslmode=verify-full with the app Secret's CA: %v\n%s\nmanager log:\n%s", err, out, pod.logTail())
	}
	// The controls: no TLS over TCP is refused; the superuser's password
	// over TCP is refused even with TLS.
	plain := appURL
	plain.RootCert = ""
	if out, err := psql(plain.String(), "SELECT 1"); err == nil || !strings.Contains(out, "no encryption") {
		t.Errorf("psql sslmode=disable over TCP: %v\n%s, want refused", err, out)
	}
	superTCP := appURL
	superTCP.User, superTCP.Password = postgres.Superuser, superPassword
	if out, err := psql(superTCP.String(), "SELECT 1"); err == nil || !strings.Contains(out, "certificate") {
		t.Errorf("superuser with its password over TCP: %v\n%s, want refused", err, out)
	}

	// The controller's own connection (what FeatureStores use) is TLS with
	// its client certificate. It waits for the instance to be Running,
	// which takes a ready StatefulSet; no kubelet reports one here.
	var sts appsv1.StatefulSet
	must(c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "tls"}, &sts))
	sts.Status = appsv1.StatefulSetStatus{ObservedGeneration: sts.Generation, Replicas: 1, ReadyReplicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1}
	must(c.Status().Update(ctx, &sts))
	waitFor(t, time.Minute, "pgi/tls Running", func() bool {
		var inst outpostv1.PostgresInstance
		return c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "tls"}, &inst) == nil && inst.Status.Phase == outpostv1.InstanceRunning
	})
	url, err := rt.DatabaseURL(ctx, "default", "tls", "features")
	must(err)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("the controller's superuser URL: %v", err)
	}
	defer conn.Close(ctx)
	var ssl bool
	var dn string
	must(conn.QueryRow(ctx, "SELECT ssl, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl, &dn))
	if !ssl || dn != "/CN=postgres" || !strings.Contains(url, "sslmode=verify-full") || strings.Contains(url, superPassword) {
		t.Errorf("the controller's connection: ssl %v, client certificate %q, URL without the password: %v", ssl, dn, !strings.Contains(url, superPassword))
	}
}
