package kuberuntime_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/instancemanager"
	"github.com/outpostdata/outpost/controller/kuberuntime"
	"github.com/outpostdata/outpost/controller/kubesource"
	"github.com/outpostdata/outpost/test/harness"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startController runs the kubernetes source with the kubernetes runtime in
// this process against the apiserver, until the test ends.
func startController(t *testing.T, api *harness.APIServer, logs *syncBuffer) {
	t.Helper()
	mgr, err := kubesource.NewManager(kubesource.Options{
		Config:     api.Config,
		Log:        slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MinRequeue: 10 * time.Second,
		NewRuntime: func(c client.Client, s *runtime.Scheme) (controller.Runtime, error) {
			return &kuberuntime.Runtime{Client: c, Reader: api.Client, Scheme: s, Log: slog.New(slog.NewTextHandler(logs, nil)),
				Pods: kuberuntime.PodOptions{Image: "outpost/instance:test", ImagePullPolicy: corev1.PullIfNotPresent}}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type errorf string

func (e errorf) Error() string { return string(e) }

func newInstance(name string, policy outpostv1.DeletionPolicy) *outpostv1.PostgresInstance {
	return &outpostv1.PostgresInstance{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: outpostv1.PostgresInstanceSpec{
			Resources:      outpostv1.InstanceResources{CPU: resource.MustParse("2"), Memory: resource.MustParse("1Gi")},
			Storage:        outpostv1.InstanceStorage{Size: resource.MustParse("5Gi"), StorageClassName: ptr.To("fast")},
			Extensions:     []outpostv1.Extension{"vector"},
			DeletionPolicy: policy,
		},
	}
}

// ownedObjects lists every object of the four kinds in the namespace that
// the instance owns.
func ownedObjects(t *testing.T, c client.Client, inst *outpostv1.PostgresInstance) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	lists := map[string]client.ObjectList{
		"Secret": &corev1.SecretList{}, "ConfigMap": &corev1.ConfigMapList{},
		"Service": &corev1.ServiceList{}, "StatefulSet": &appsv1.StatefulSetList{},
	}
	for kind, l := range lists {
		if err := c.List(ctx, l, client.InNamespace(inst.Namespace)); err != nil {
			t.Fatal(err)
		}
		items, _ := meta.ExtractList(l)
		for _, o := range items {
			obj := o.(client.Object)
			for _, ref := range obj.GetOwnerReferences() {
				if ref.UID == inst.UID && ref.Kind == "PostgresInstance" && ptr.Deref(ref.Controller, false) && ptr.Deref(ref.BlockOwnerDeletion, false) {
					out = append(out, kind+"/"+obj.GetName())
				}
			}
		}
	}
	return out
}

func TestKubernetesRuntimeCreatesUpdatesAndFinalizesTheInstanceObjects(t *testing.T) {
	api := harness.StartAPIServer(t)
	logs := &syncBuffer{}
	startController(t, api, logs)
	c, ctx := api.Client, context.Background()

	inst := newInstance("db", outpostv1.DeletionRetain)
	if err := c.Create(ctx, inst); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(inst)
	sts := &appsv1.StatefulSet{}
	eventually(t, 30*time.Second, "StatefulSet db and status", func() error {
		if err := c.Get(ctx, key, sts); err != nil {
			return err
		}
		if err := c.Get(ctx, key, inst); err != nil {
			return err
		}
		if inst.Status.ObservedGeneration != inst.Generation {
			return errorf("status not written yet")
		}
		return nil
	})

	// Status: honest about the pod that no kubelet runs here.
	ready := meta.FindStatusCondition(inst.Status.Conditions, outpostv1.ConditionReady)
	if inst.Status.Phase != outpostv1.InstanceProvisioning || ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != "PodNotReady" {
		t.Errorf("status = %+v, want Provisioning with Ready False/PodNotReady", inst.Status)
	}
	if inst.Status.Endpoint != "db.default.svc:5432" || inst.Status.CredentialsSecret == nil || inst.Status.CredentialsSecret.Name != "db-app" {
		t.Errorf("endpoint %q, credentials %+v", inst.Status.Endpoint, inst.Status.CredentialsSecret)
	}
	if !slicesContains(inst.Finalizers, kubesource.Finalizer) {
		t.Errorf("finalizers = %v, want %s", inst.Finalizers, kubesource.Finalizer)
	}

	// Exactly these objects, each owned by the instance as controller.
	got := strings.Join(sorted(ownedObjects(t, c, inst)), " ")
	if want := "ConfigMap/db-config Secret/db-app Secret/db-backup-token Secret/db-superuser Secret/db-tls Service/db StatefulSet/db"; got != want {
		t.Errorf("owned objects = %s, want %s", got, want)
	}

	// Labels on every object and the pod template.
	for _, obj := range []client.Object{&corev1.Secret{}, &corev1.ConfigMap{}, &corev1.Service{}} {
		name := map[string]string{"*v1.Secret": "db-app", "*v1.ConfigMap": "db-config", "*v1.Service": "db"}[typeName(obj)]
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, obj); err != nil {
			t.Fatal(err)
		}
		checkLabels(t, typeName(obj), obj.GetLabels())
	}
	checkLabels(t, "StatefulSet", sts.Labels)
	checkLabels(t, "pod template", sts.Spec.Template.Labels)

	// The StatefulSet: one replica, resources from the spec as request and
	// limit, the PVC from storage, a locked-down container.
	if *sts.Spec.Replicas != 1 || sts.Spec.ServiceName != "db" {
		t.Errorf("replicas %d, serviceName %q", *sts.Spec.Replicas, sts.Spec.ServiceName)
	}
	ctr := sts.Spec.Template.Spec.Containers[0]
	checkResources(t, ctr, "2", "1Gi")
	if strings.Join(ctr.Command[:3], " ") != "outpost instance run" || ctr.Image != "outpost/instance:test" {
		t.Errorf("container runs %v from %s", ctr.Command, ctr.Image)
	}
	sc, psc := ctr.SecurityContext, sts.Spec.Template.Spec.SecurityContext
	if !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("container security context = %+v", sc)
	}
	if !*psc.RunAsNonRoot || *psc.RunAsUser == 0 || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context = %+v", psc)
	}
	// A recursive fsGroup change on every mount would also undo the 0700
	// PostgreSQL needs on pgdata; only a volume not yet ours is walked.
	if psc.FSGroupChangePolicy == nil || *psc.FSGroupChangePolicy != corev1.FSGroupChangeOnRootMismatch {
		t.Errorf("pod fsGroupChangePolicy = %v, want OnRootMismatch", psc.FSGroupChangePolicy)
	}
	if ctr.ReadinessProbe.HTTPGet.Path != "/readyz" || ctr.LivenessProbe.HTTPGet.Path != "/livez" {
		t.Errorf("probes: readiness %+v liveness %+v", ctr.ReadinessProbe, ctr.LivenessProbe)
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("volumeClaimTemplates = %+v", sts.Spec.VolumeClaimTemplates)
	}
	pvc := sts.Spec.VolumeClaimTemplates[0].Spec
	if pvc.Resources.Requests.Storage().String() != "5Gi" || ptr.Deref(pvc.StorageClassName, "") != "fast" {
		t.Errorf("PVC template: %s of class %v", pvc.Resources.Requests.Storage(), pvc.StorageClassName)
	}
	if sts.Spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
		t.Errorf("PVC retention with deletionPolicy Retain: %+v", sts.Spec.PersistentVolumeClaimRetentionPolicy)
	}

	// The Secrets hold generated credentials that appear in no log; the
	// app's has no superuser password, and a verify-full URI with the CA.
	secret, superSecret := &corev1.Secret{}, &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "db-app"}, secret); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "db-superuser"}, superSecret); err != nil {
		t.Fatal(err)
	}
	password := string(secret.Data["password"])
	super := string(superSecret.Data["superuser-password"])
	uri := string(secret.Data["uri"])
	if len(password) < 20 || len(super) < 20 || password == super || string(secret.Data["username"]) != "app" || !strings.HasPrefix(uri, "postgres://app:") ||
		!strings.Contains(uri, "sslmode=verify-full") || !strings.Contains(uri, "sslrootcert=/etc/outpost-app/ca.crt") || !strings.HasPrefix(string(secret.Data["ca.crt"]), "-----BEGIN CERTIFICATE") {
		t.Errorf("app secret keys: %v, uri %s", keys(secret.Data), strings.Replace(uri, password, "PASSWORD", 1))
	}
	for k, v := range secret.Data {
		if strings.Contains(string(v), super) || strings.Contains(k, "superuser") {
			t.Errorf("the app Secret's %s holds the superuser password", k)
		}
	}
	if len(superSecret.Data) != 1 {
		t.Errorf("the superuser Secret holds %v, want only superuser-password", keys(superSecret.Data))
	}
	if strings.Contains(logs.String(), password) || strings.Contains(logs.String(), super) {
		t.Errorf("a generated password appears in the controller log")
	}

	// Changing the spec updates the objects; the passwords stay.
	patch := client.MergeFrom(inst.DeepCopy())
	inst.Spec.Resources.CPU = resource.MustParse("4")
	inst.Spec.Resources.Memory = resource.MustParse("2Gi")
	inst.Spec.Parameters = map[string]string{"work_mem": "8MB"}
	if err := c.Patch(ctx, inst, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "StatefulSet and ConfigMap follow the spec", func() error {
		if err := c.Get(ctx, key, sts); err != nil {
			return err
		}
		if sts.Spec.Template.Spec.Containers[0].Resources.Limits.Cpu().String() != "4" {
			return errorf("cpu limit still " + sts.Spec.Template.Spec.Containers[0].Resources.Limits.Cpu().String())
		}
		cm := &corev1.ConfigMap{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "db-config"}, cm); err != nil {
			return err
		}
		var cfg instancemanager.Config
		if err := json.Unmarshal([]byte(cm.Data[instancemanager.ConfigFileName]), &cfg); err != nil {
			return err
		}
		if cfg.Parameters["work_mem"] != "8MB" || cfg.Parameters["shared_buffers"] != "512MB" || len(cfg.Extensions) != 1 {
			return errorf("config " + cm.Data[instancemanager.ConfigFileName])
		}
		return nil
	})
	checkResources(t, sts.Spec.Template.Spec.Containers[0], "4", "2Gi")
	after := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(secret), after); err != nil || string(after.Data["password"]) != password {
		t.Errorf("the Secret's password changed with the spec (%v)", err)
	}

	// What a kubelet would report: the pod is ready. The instance follows.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(sts), sts); err != nil {
			return err
		}
		sts.Status = appsv1.StatefulSetStatus{ObservedGeneration: sts.Generation, Replicas: 1, ReadyReplicas: 1,
			CurrentReplicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1, CurrentRevision: "r1", UpdateRevision: "r1"}
		return c.Status().Update(ctx, sts)
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "instance Running once its pod is ready", func() error {
		if err := c.Get(ctx, key, inst); err != nil {
			return err
		}
		if inst.Status.Phase != outpostv1.InstanceRunning || inst.Status.ObservedGeneration != inst.Generation {
			return errorf(string(inst.Status.Phase))
		}
		return nil
	})

	// Deleting runs the finalizer: the workload goes, and with Retain the
	// Secret stays, released from the instance, beside the volume.
	if err := c.Delete(ctx, inst); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "instance gone", func() error {
		if err := c.Get(ctx, key, &outpostv1.PostgresInstance{}); !apierrors.IsNotFound(err) {
			return errorf("still there")
		}
		return nil
	})
	for _, obj := range []client.Object{&appsv1.StatefulSet{}, &corev1.Service{}} {
		if err := c.Get(ctx, key, obj); !apierrors.IsNotFound(err) {
			t.Errorf("%s db after delete: %v, want NotFound", typeName(obj), err)
		}
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "db-config"}, &corev1.ConfigMap{}); !apierrors.IsNotFound(err) {
		t.Errorf("ConfigMap after delete: %v", err)
	}
	kept := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(secret), kept); err != nil {
		t.Errorf("Secret with deletionPolicy Retain: %v", err)
	} else if len(kept.OwnerReferences) != 0 || string(kept.Data["password"]) != password {
		t.Errorf("kept Secret still owned (%v) or changed", kept.OwnerReferences)
	}

	// With deletionPolicy Delete the PVC goes with the StatefulSet and the
	// Secret goes too.
	gone := newInstance("scratch", outpostv1.DeletionDelete)
	if err := c.Create(ctx, gone); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "StatefulSet scratch", func() error { return c.Get(ctx, client.ObjectKeyFromObject(gone), sts) })
	if sts.Spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted != appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
		t.Errorf("PVC retention with deletionPolicy Delete: %+v", sts.Spec.PersistentVolumeClaimRetentionPolicy)
	}
	if err := c.Delete(ctx, gone); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "scratch and its Secret gone", func() error {
		for _, name := range []string{"scratch-app", "scratch-superuser", "scratch-backup-token", "scratch-tls"} {
			if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
				return errorf("secret " + name + " still there")
			}
		}
		if err := c.Get(ctx, client.ObjectKeyFromObject(gone), &outpostv1.PostgresInstance{}); !apierrors.IsNotFound(err) {
			return errorf("instance still there")
		}
		return nil
	})
}

func checkLabels(t *testing.T, what string, labels map[string]string) {
	t.Helper()
	for k, v := range map[string]string{"app.kubernetes.io/managed-by": "outpost", "app.kubernetes.io/instance": "db", "outpost.dev/instance": "db"} {
		if labels[k] != v {
			t.Errorf("%s label %s = %q, want %q", what, k, labels[k], v)
		}
	}
}

func checkResources(t *testing.T, ctr corev1.Container, cpu, mem string) {
	t.Helper()
	r := ctr.Resources
	if r.Requests.Cpu().String() != cpu || r.Limits.Cpu().String() != cpu || r.Requests.Memory().String() != mem || r.Limits.Memory().String() != mem {
		t.Errorf("resources = %+v, want cpu %s and memory %s as request and limit", r, cpu, mem)
	}
}

func typeName(obj any) string {
	switch obj.(type) {
	case *corev1.Secret:
		return "*v1.Secret"
	case *corev1.ConfigMap:
		return "*v1.ConfigMap"
	case *corev1.Service:
		return "*v1.Service"
	case *appsv1.StatefulSet:
		return "*v1.StatefulSet"
	}
	return "?"
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return sorted(out)
}
