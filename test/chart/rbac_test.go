package chart_test

import (
	"context"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/controldb"
	"github.com/outpostdata/outpost/controller/kuberuntime"
	"github.com/outpostdata/outpost/controller/kubesource"
	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/usageexport"
)

const releaseNamespace = "outpost-system"

// render runs helm template for a release "outpost" in releaseNamespace.
func render(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(harness.Tool(t, "helm"), append([]string{"template", "outpost", chartDir(), "--namespace", releaseNamespace}, args...)...).Output()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	return string(out)
}

func kubectl(t *testing.T, api *harness.APIServer, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(harness.SystemBinary(t, "kubectl"), append([]string{"--kubeconfig", api.Kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestRenderedChartIsAcceptedByTheAPIServer(t *testing.T) {
	api := harness.StartAPIServer(t)
	kubectl(t, api, "", "create", "namespace", releaseNamespace)
	for _, variant := range [][]string{
		nil,
		{"--set", "controldb.enabled=false", "--set", "controldb.externalURL=postgres://u:p@db:5432/outpost", "--set", "watchNamespaces={default}"},
	} {
		out := kubectl(t, api, render(t, variant...), "apply", "--dry-run=server", "-f", "-")
		for _, want := range []string{"deployment.apps/outpost-controller", "clusterrole.rbac.authorization.k8s.io/outpost-controller", "serviceaccount/outpost"} {
			if !strings.Contains(out, want) {
				t.Errorf("helm template %v | kubectl apply --dry-run=server did not accept %s:\n%s", variant, want, out)
			}
		}
	}
}

// TestChartRBACIsExactlyEnough runs the controller as the chart's
// ServiceAccount (impersonation), with the chart's RBAC applied: a
// PostgresInstance is reconciled and deleted. Then one permission is taken
// from the ClusterRole and the next instance fails with forbidden.
func TestChartRBACIsExactlyEnough(t *testing.T) {
	api := harness.StartAPIServer(t)
	kubectl(t, api, "", "create", "namespace", releaseNamespace)
	// Secrets are namespaced (the default): the controller watches default.
	kubectl(t, api, render(t, "--set", "watchNamespaces={default}"), "apply", "-f", "-")

	cfg := asServiceAccount(api)
	pg := harness.StartPostgres(t)
	db, err := controldb.Open(context.Background(), pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	mgr, err := kubesource.NewManager(kubesource.Options{
		Config: cfg, Log: harness.Logger(t), MinRequeue: 10 * time.Second, Namespaces: []string{"default"},
		Usage:          &kubesource.UsageOptions{DB: db.Pool, Namespace: releaseNamespace, Version: "test"},
		LeaderElection: true, LeaderElectionNamespace: releaseNamespace,
		NewRuntime: func(c client.Client, s *runtime.Scheme) (controller.Runtime, error) {
			return &kuberuntime.Runtime{Client: c, Scheme: s, Log: slog.New(slog.DiscardHandler), Pods: kuberuntime.PodOptions{Image: "outpost/instance:test"}}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	c := api.Client
	create := func(name string) *outpostv1.PostgresInstance {
		inst := &outpostv1.PostgresInstance{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: outpostv1.PostgresInstanceSpec{
				Resources: outpostv1.InstanceResources{CPU: resource.MustParse("1"), Memory: resource.MustParse("512Mi")},
				Storage:   outpostv1.InstanceStorage{Size: resource.MustParse("1Gi")},
			},
		}
		if err := c.Create(context.Background(), inst); err != nil {
			t.Fatal(err)
		}
		return inst
	}
	readyReason := func(inst *outpostv1.PostgresInstance) (string, string) {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(inst), inst); err != nil {
			return "", err.Error()
		}
		if cond := meta.FindStatusCondition(inst.Status.Conditions, outpostv1.ConditionReady); cond != nil {
			return cond.Reason, cond.Message
		}
		return "", ""
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 60 s", what)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// Metering as the ServiceAccount: the signing key Secret in the
	// release namespace, and the DataController's status.
	site := &outpostv1.DataController{
		ObjectMeta: metav1.ObjectMeta{Name: "site", Namespace: "default"},
		Spec:       outpostv1.DataControllerSpec{Site: outpostv1.Site{Name: "plant"}},
	}
	if err := c.Create(context.Background(), site); err != nil {
		t.Fatal(err)
	}
	wait("signing key Secret and DataController status written as the ServiceAccount", func() bool {
		key, err := kubesource.LoadSigningKey(context.Background(), c, releaseNamespace)
		if err != nil || c.Get(context.Background(), client.ObjectKeyFromObject(site), site) != nil {
			return false
		}
		ready := meta.FindStatusCondition(site.Status.Conditions, outpostv1.ConditionReady)
		return site.Status.SigningKeyFingerprint == usageexport.Fingerprint(key.Public()) && ready != nil && ready.Status == metav1.ConditionTrue
	})

	first := create("first")
	wait("first reconciled as the ServiceAccount", func() bool {
		reason, _ := readyReason(first)
		return reason == "PodNotReady" && c.Get(context.Background(), client.ObjectKeyFromObject(first), &appsv1.StatefulSet{}) == nil
	})
	var events corev1.EventList
	if err := c.List(context.Background(), &events, client.InNamespace("default")); err != nil || len(events.Items) == 0 {
		t.Errorf("no events recorded as the ServiceAccount (%v)", err)
	}
	// ObjectStores and Backups get their status as the ServiceAccount; the
	// ObjectStore's credentials Secret is read with it too.
	store := &outpostv1.ObjectStore{ObjectMeta: metav1.ObjectMeta{Name: "s3", Namespace: "default"}, Spec: outpostv1.ObjectStoreSpec{
		Endpoint: "http://127.0.0.1:9", Bucket: "backups",
		Credentials: outpostv1.ObjectStoreCredentials{Secret: &outpostv1.LocalObjectReference{Name: "no-such-secret"}},
	}}
	if err := c.Create(context.Background(), store); err != nil {
		t.Fatal(err)
	}
	wait("ObjectStore status written as the ServiceAccount", func() bool {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(store), store); err != nil {
			return false
		}
		cond := meta.FindStatusCondition(store.Status.Conditions, outpostv1.ConditionReady)
		return cond != nil && strings.Contains(cond.Message, "Secret no-such-secret does not exist")
	})
	bk := &outpostv1.Backup{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "default"}, Spec: outpostv1.BackupSpec{Instance: outpostv1.LocalObjectReference{Name: "first"}}}
	if err := c.Create(context.Background(), bk); err != nil {
		t.Fatal(err)
	}
	wait("Backup status written as the ServiceAccount", func() bool {
		return c.Get(context.Background(), client.ObjectKeyFromObject(bk), bk) == nil &&
			bk.Status.Phase == outpostv1.BackupFailed && strings.Contains(bk.Status.Error, "has no spec.backup")
	})

	if err := c.Delete(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	wait("first finalized as the ServiceAccount", func() bool {
		return c.Get(context.Background(), client.ObjectKeyFromObject(first), &outpostv1.PostgresInstance{}) != nil
	})

	// Take "create" on statefulsets away: the next instance cannot run.
	var role rbacv1.ClusterRole
	if err := c.Get(context.Background(), client.ObjectKey{Name: "outpost-controller"}, &role); err != nil {
		t.Fatal(err)
	}
	for i, rule := range role.Rules {
		if slices.Contains(rule.Resources, "statefulsets") {
			role.Rules[i].Verbs = slices.DeleteFunc(slices.Clone(rule.Verbs), func(v string) bool { return v == "create" })
		}
	}
	if err := c.Update(context.Background(), &role); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the authorizer's informer sees the change
	second := create("second")
	wait("second fails with forbidden", func() bool {
		reason, msg := readyReason(second)
		return reason == controller.ReasonRuntimeError && strings.Contains(msg, "forbidden")
	})
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(second), &appsv1.StatefulSet{}); err == nil {
		t.Errorf("a StatefulSet was created without the permission to")
	}
}
