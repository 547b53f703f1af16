package cluster

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// A started cluster runs a pod of the pause image with a claim on a local
// volume, bound when the pod is scheduled, and cluster DNS answers from
// the host; Stop then leaves nothing behind: no network namespace, route, veth,
// cgroup, mount or process, and the host's ip_forward as it was.
func TestClusterRunsAPodAndLeavesNothingBehind(t *testing.T) {
	fwdBefore, err := hostIPForward()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cl, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			cl.Stop()
		}
	}()
	t.Logf("cluster started in %s (node Ready at %s, images imported in %s)", cl.Started, cl.NodeReady, cl.Imported)

	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "default"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "pause", Namespace: "default"},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "pause", Image: PauseImage, ImagePullPolicy: corev1.PullNever,
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}},
			TerminationGracePeriodSeconds: ptr.To[int64](1),
		},
	}
	for _, o := range []client.Object{pvc, pod} {
		if err := cl.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if err := cl.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			t.Fatal(err)
		}
		if pod.Status.Phase == corev1.PodRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod not Running within 2 minutes: %+v (logs in %s)", pod.Status, cl.Dir)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !cl.net.PodCIDR.Contains(net.ParseIP(pod.Status.PodIP)) {
		t.Errorf("pod IP %s is not in the pod CIDR %s", pod.Status.PodIP, cl.net.PodCIDR)
	}
	if err := cl.Client.Get(ctx, client.ObjectKeyFromObject(pvc), pvc); err != nil || pvc.Status.Phase != corev1.ClaimBound {
		t.Errorf("claim %s: %v, %v", pvc.Name, pvc.Status.Phase, err)
	}
	if addrs, err := cl.LookupHost(ctx, "kubernetes.default.svc"); err != nil || len(addrs) != 1 || addrs[0] != cl.net.KubernetesServiceIP().String() {
		t.Errorf("cluster DNS: kubernetes.default.svc = %v, %v; want %s", addrs, err, cl.net.KubernetesServiceIP())
	}

	dir, netns, root := cl.Dir, cl.net, cl.cgroups.root
	socket := cl.containerd.Socket
	stopped = true
	if err := cl.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	t.Logf("cluster stopped in %s", Stopped)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s is still there (%v)", dir, err)
	}
	if _, err := os.Stat(netns.Path()); !os.IsNotExist(err) {
		t.Errorf("network namespace %s is still there (%v)", netns.Name, err)
	}
	if _, err := net.InterfaceByName(netns.hostVeth); err == nil {
		t.Errorf("veth %s is still there", netns.hostVeth)
	}
	routes, _ := hostRoutes()
	if overlaps(routes, netns.subnets()...) {
		t.Errorf("routes to the cluster's subnets are still there: %v", routes)
	}
	for _, c := range cgroupControllers {
		if _, err := os.Stat(filepath.Join(cgroupV1, c, root)); !os.IsNotExist(err) {
			t.Errorf("cgroup %s%s is still there (%v)", c, root, err)
		}
	}
	if pids := shims(socket); len(pids) != 0 {
		t.Errorf("containerd shims still run: %v", pids)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), dir) {
		t.Errorf("mounts under %s are left", dir)
	}
	if fwd, _ := hostIPForward(); fwd != fwdBefore {
		t.Errorf("host ip_forward %s after the cluster, %s before", fwd, fwdBefore)
	}
}

// Check fails loudly, naming every missing tool and what installs it.
// The control for a test run that would otherwise skip.
func TestCheckNamesEveryMissingTool(t *testing.T) {
	t.Setenv("OUTPOST_TOOLS_DIR", t.TempDir())
	err := Check()
	if err == nil {
		t.Fatal("Check passed with an empty tools directory")
	}
	for _, name := range tools {
		if !strings.Contains(err.Error(), name+" not found") {
			t.Errorf("Check does not name the missing %s:\n%v", name, err)
		}
	}
	if !strings.Contains(err.Error(), "make deps") {
		t.Errorf("Check does not say what installs the tools:\n%v", err)
	}
}
