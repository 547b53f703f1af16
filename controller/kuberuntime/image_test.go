package kuberuntime

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/test/harness"
)

// Images cannot be built here; this holds the instance image's Dockerfile to
// the pods this runtime creates from it.
func TestInstancePodsMatchTheInstanceImage(t *testing.T) {
	stages, err := harness.ReadDockerfile(filepath.Join(harness.RepoRoot(), "scripts", "images", "instance.Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	image := stages[len(stages)-1]
	inst := &outpostv1.PostgresInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "default"},
		Spec: outpostv1.PostgresInstanceSpec{
			Resources: outpostv1.InstanceResources{CPU: resource.MustParse("1"), Memory: resource.MustParse("1Gi")},
			Storage:   outpostv1.InstanceStorage{Size: resource.MustParse("1Gi")},
		},
	}
	pod := statefulSetSpec(inst, PodOptions{Image: "outpost-instance"}).Template.Spec

	user, group, _ := strings.Cut(image.Last("USER"), ":")
	if user != strconv.FormatInt(*pod.SecurityContext.RunAsUser, 10) || group != strconv.FormatInt(*pod.SecurityContext.RunAsGroup, 10) {
		t.Errorf("instance image USER %s, but pods run as %d:%d", image.Last("USER"), *pod.SecurityContext.RunAsUser, *pod.SecurityContext.RunAsGroup)
	}
	if !slices.ContainsFunc(image.Values("COPY"), func(args string) bool { return strings.HasSuffix(args, " /usr/local/bin/outpost") }) {
		t.Error("instance image does not install /usr/local/bin/outpost, which the pod's command runs")
	}
	command := pod.Containers[0].Command
	if len(command) == 0 || command[0] != "outpost" {
		t.Fatalf("pod command %v does not run outpost", command)
	}
	outpost, remove, err := harness.BuildOutpost()
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	// cobra rejects an unknown command or flag before it prints help.
	if out, err := exec.Command(outpost, append(slices.Clone(command[1:]), "--help")...).CombinedOutput(); err != nil {
		t.Errorf("pod command %v is not a valid outpost command line: %v\n%s", command, err, out)
	}
	for _, m := range pod.Containers[0].VolumeMounts {
		if m.MountPath == dataMount {
			return
		}
	}
	t.Errorf("pods mount no volume at %s", dataMount)
}
