package chart_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/outpostdata/outpost/controller/kubesource"
	"github.com/outpostdata/outpost/test/harness"
)

// asServiceAccount is the apiserver's config impersonating the chart's
// ServiceAccount.
func asServiceAccount(api *harness.APIServer) *rest.Config {
	cfg := rest.CopyConfig(api.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + releaseNamespace + ":outpost",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + releaseNamespace, "system:authenticated"},
	}
	return cfg
}

// A GitOps render (helm template, as Argo CD and Flux run it) is the same
// every time and holds no Secret and no password: controldb's passwords
// are in a Secret the controller creates.
func TestHelmTemplateIsStableAndHoldsNoControlDBPassword(t *testing.T) {
	first, second := render(t), render(t)
	if first != second {
		t.Error("two renders of the same values differ")
	}
	if strings.Contains(first, "kind: Secret") {
		t.Errorf("the default render holds a Secret:\n%s", first)
	}
	if !strings.Contains(first, "name: OUTPOST_CONTROLDB_SECRET\n              value: outpost-controldb") || strings.Contains(first, "OUTPOST_CONTROLDB_URL") {
		t.Error("the controller does not get controldb from the Secret it creates ($OUTPOST_CONTROLDB_SECRET)")
	}
	// existingSecret keeps working: the URL comes from the user's Secret.
	ext := render(t, "--set", "controldb.enabled=false", "--set", "controldb.existingSecret.name=my-db", "--set", "controldb.existingSecret.key=dsn")
	if !strings.Contains(ext, "name: my-db") || !strings.Contains(ext, "key: dsn") || strings.Contains(ext, "kind: Secret") {
		t.Errorf("existingSecret render does not read the URL from my-db/dsn:\n%s", ext)
	}
}

// rbac.secrets namespaced (the default) lets the controller touch Secrets
// in the watched namespaces and the release namespace only; cluster lets
// it touch them everywhere. The controller creates controldb's Secret with
// what the chart grants.
func TestChartSecretsRBACIsNamespacedByDefault(t *testing.T) {
	api := harness.StartAPIServer(t)
	for _, ns := range []string{releaseNamespace, "team-a", "other"} {
		kubectl(t, api, "", "create", "namespace", ns)
	}
	kubectl(t, api, render(t, "--set", "watchNamespaces={team-a}"), "apply", "-f", "-")
	ctx := context.Background()
	sa, err := client.New(asServiceAccount(api), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	createSecret := func(ns string) error {
		return sa.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-", Namespace: ns}, StringData: map[string]string{"k": "v"}})
	}
	for _, ns := range []string{"team-a", releaseNamespace} {
		if err := createSecret(ns); err != nil {
			t.Errorf("creating a Secret in %s as the ServiceAccount: %v", ns, err)
		}
		if err := sa.List(ctx, &corev1.SecretList{}, client.InNamespace(ns)); err != nil {
			t.Errorf("listing Secrets in %s as the ServiceAccount: %v", ns, err)
		}
	}
	if err := createSecret("other"); !apierrors.IsForbidden(err) {
		t.Errorf("creating a Secret in an unwatched namespace: %v, want forbidden", err)
	}
	if err := sa.Get(ctx, client.ObjectKey{Namespace: "other", Name: "x"}, &corev1.Secret{}); !apierrors.IsForbidden(err) {
		t.Errorf("reading a Secret in an unwatched namespace: %v, want forbidden", err)
	}
	if err := sa.List(ctx, &corev1.SecretList{}); !apierrors.IsForbidden(err) {
		t.Errorf("listing Secrets in every namespace: %v, want forbidden", err)
	}

	// controldb's Secret: created by the controller as the ServiceAccount,
	// then read back unchanged.
	url, err := kubesource.ControlDBSecretURL(ctx, asServiceAccount(api), releaseNamespace, "outpost-controldb")
	if err != nil {
		t.Fatalf("the controller creating controldb's Secret: %v", err)
	}
	again, err := kubesource.ControlDBSecretURL(ctx, asServiceAccount(api), releaseNamespace, "outpost-controldb")
	if err != nil || again != url || !strings.HasPrefix(url, "postgres://outpost:") || !strings.Contains(url, "@outpost-controldb."+releaseNamespace+".svc:5432/outpost") {
		t.Errorf("controldb URL %q, then %q (%v): want one stable URL of the in-chart controldb", url, again, err)
	}
	var s corev1.Secret
	if err := api.Client.Get(ctx, client.ObjectKey{Namespace: releaseNamespace, Name: "outpost-controldb"}, &s); err != nil ||
		len(s.Data["superuser-password"]) < 16 || len(s.Data["password"]) < 16 || !strings.Contains(url, string(s.Data["password"])) {
		t.Errorf("controldb Secret: %v, keys %v", err, len(s.Data))
	}

	// The control: with rbac.secrets cluster the same request is allowed.
	kubectl(t, api, render(t, "--set", "watchNamespaces={team-a}", "--set", "rbac.secrets=cluster"), "apply", "-f", "-")
	waitAllowed(t, func() error { return createSecret("other") })
}

// waitAllowed retries f while the authorizer has not yet seen new RBAC.
func waitAllowed(t *testing.T, f func() error) {
	t.Helper()
	var err error
	for range 50 {
		if err = f(); !apierrors.IsForbidden(err) {
			break
		}
		time.Sleep(100 * time.Millisecond) // the authorizer's informer sees the change
	}
	if err != nil {
		t.Errorf("with rbac.secrets cluster: %v, want allowed", err)
	}
}
