package chart_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/outpostdata/outpost/test/harness"
)

// Images cannot be built on these machines, so these tests hold the
// Dockerfiles to what the chart runs in them and to what the tests ran.

func dockerfile(t *testing.T, name string) []harness.DockerfileStage {
	t.Helper()
	stages, err := harness.ReadDockerfile(filepath.Join(harness.RepoRoot(), "scripts", "images", name))
	if err != nil {
		t.Fatal(err)
	}
	return stages
}

// hostCodename is the Debian release the tests run on, e.g. "bookworm".
func hostCodename(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/etc/os-release")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VERSION_CODENAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	t.Fatal("/etc/os-release has no VERSION_CODENAME")
	return ""
}

func goVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return string(m[1])
}

func TestImagesBuildWithTheModulesGoAndTheTestedDebian(t *testing.T) {
	want := "golang:" + goVersion(t) + "-" + hostCodename(t)
	for _, name := range []string{"controller.Dockerfile", "instance.Dockerfile"} {
		build := dockerfile(t, name)[0]
		if from, _, _ := strings.Cut(build.From, " "); from != want {
			t.Errorf("%s: build stage is FROM %s, want %s (go.mod's Go on the Debian release the tests run on)", name, from, want)
		}
	}
}

func TestInstanceImageInstallsWithTheScriptTheTestsUse(t *testing.T) {
	stages := dockerfile(t, "instance.Dockerfile")
	final := stages[len(stages)-1]
	if want := "debian:" + hostCodename(t) + "-slim"; final.From != want {
		t.Errorf("instance image is FROM %s, want %s: install-deps.sh's apt steps are tested on %s", final.From, want, hostCodename(t))
	}
	copied := slices.ContainsFunc(final.Values("COPY"), func(args string) bool {
		return strings.HasPrefix(args, "scripts/install-deps.sh ")
	})
	ran := slices.ContainsFunc(final.Values("RUN"), func(args string) bool {
		return regexp.MustCompile(`/scripts/install-deps\.sh run( |&|$)`).MatchString(args)
	})
	if !copied || !ran {
		t.Errorf("instance image must COPY scripts/install-deps.sh and RUN it with `run` (copied=%v ran=%v)", copied, ran)
	}
	makefile, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(makefile), "scripts/install-deps.sh run") {
		t.Error("`make run` no longer installs with `scripts/install-deps.sh run`, the step the instance image runs")
	}
}

// renderedWorkloads returns the chart's controller Deployment and controldb
// StatefulSet.
func renderedWorkloads(t *testing.T) (*appsv1.Deployment, *appsv1.StatefulSet) {
	t.Helper()
	var (
		dep *appsv1.Deployment
		sts *appsv1.StatefulSet
	)
	for _, doc := range strings.Split(render(t), "\n---") {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("rendered chart: %v", err)
		}
		switch meta.Kind {
		case "Deployment":
			dep = &appsv1.Deployment{}
			if err := yaml.Unmarshal([]byte(doc), dep); err != nil {
				t.Fatal(err)
			}
		case "StatefulSet":
			sts = &appsv1.StatefulSet{}
			if err := yaml.Unmarshal([]byte(doc), sts); err != nil {
				t.Fatal(err)
			}
		}
	}
	if dep == nil || sts == nil {
		t.Fatal("the chart rendered no controller Deployment or no controldb StatefulSet")
	}
	return dep, sts
}

// checkUser compares the image's USER with the pod's runAsUser/runAsGroup.
func checkUser(t *testing.T, image string, final harness.DockerfileStage, pod *corev1.PodSecurityContext) {
	t.Helper()
	user, group, _ := strings.Cut(final.Last("USER"), ":")
	uid, err1 := strconv.ParseInt(user, 10, 64)
	gid, err2 := strconv.ParseInt(group, 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("%s: USER %q is not numeric uid:gid, so runAsNonRoot cannot check it", image, final.Last("USER"))
	}
	if pod == nil || pod.RunAsUser == nil || pod.RunAsGroup == nil {
		t.Fatalf("%s: the chart's pod sets no runAsUser and runAsGroup", image)
	}
	if *pod.RunAsUser != uid || *pod.RunAsGroup != gid {
		t.Errorf("%s runs as %d:%d but the chart's pod runs as %d:%d", image, uid, gid, *pod.RunAsUser, *pod.RunAsGroup)
	}
}

// checkEntrypoint checks that the image's binary is where the command finds it.
func checkEntrypoint(t *testing.T, image string, final harness.DockerfileStage) {
	t.Helper()
	if !slices.ContainsFunc(final.Values("COPY"), func(args string) bool {
		return strings.HasSuffix(args, " /usr/local/bin/outpost")
	}) {
		t.Errorf("%s does not install the outpost binary as /usr/local/bin/outpost", image)
	}
	if got := final.Last("ENTRYPOINT"); got != `["/usr/local/bin/outpost"]` {
		t.Errorf("%s: ENTRYPOINT %s, want the outpost binary", image, got)
	}
}

// checkParses runs the binary with args and --help: cobra rejects an
// unknown command or flag before it prints help.
func checkParses(t *testing.T, outpost, what string, args []string) {
	t.Helper()
	out, err := exec.Command(outpost, append(slices.Clone(args), "--help")...).CombinedOutput()
	if err != nil {
		t.Errorf("%s: `outpost %s` is not a valid command line: %v\n%s", what, strings.Join(args, " "), err, out)
	}
}

func TestImagesRunWhatTheChartStarts(t *testing.T) {
	outpost, remove, err := harness.BuildOutpost()
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	dep, sts := renderedWorkloads(t)

	controller := dockerfile(t, "controller.Dockerfile")
	final := controller[len(controller)-1]
	checkUser(t, "controller image", final, dep.Spec.Template.Spec.SecurityContext)
	checkEntrypoint(t, "controller image", final)
	ctr := dep.Spec.Template.Spec.Containers[0]
	if len(ctr.Command) != 0 {
		t.Errorf("controller Deployment overrides the image's entrypoint with %v", ctr.Command)
	}
	checkParses(t, outpost, "controller Deployment args", ctr.Args)
	var cmd []string
	if err := yaml.Unmarshal([]byte(final.Last("CMD")), &cmd); err != nil {
		t.Fatalf("controller image CMD: %v", err)
	}
	checkParses(t, outpost, "controller image CMD", cmd)

	instance := dockerfile(t, "instance.Dockerfile")
	final = instance[len(instance)-1]
	checkUser(t, "instance image", final, sts.Spec.Template.Spec.SecurityContext)
	checkEntrypoint(t, "instance image", final)
	ctr = sts.Spec.Template.Spec.Containers[0]
	if len(ctr.Command) == 0 || ctr.Command[0] != "outpost" {
		t.Fatalf("controldb command %v does not start outpost", ctr.Command)
	}
	checkParses(t, outpost, "controldb StatefulSet command", ctr.Command[1:])
}

// TestChartPodsSurviveRestartsAndASlowControlDB holds the chart to what a
// real kubelet showed: a recursive fsGroup change on every mount, and a
// liveness probe that kills the controller while it waits for controldb.
func TestChartPodsSurviveRestartsAndASlowControlDB(t *testing.T) {
	dep, sts := renderedWorkloads(t)
	psc := sts.Spec.Template.Spec.SecurityContext
	if psc == nil || psc.FSGroupChangePolicy == nil || *psc.FSGroupChangePolicy != corev1.FSGroupChangeOnRootMismatch {
		t.Errorf("controldb pod fsGroupChangePolicy is not OnRootMismatch: %+v", psc)
	}
	ctr := dep.Spec.Template.Spec.Containers[0]
	if ctr.StartupProbe == nil || ctr.StartupProbe.HTTPGet == nil || ctr.StartupProbe.HTTPGet.Path != "/healthz" {
		t.Fatalf("the controller has no startup probe on /healthz, so liveness may kill it while it waits for controldb: %+v", ctr.StartupProbe)
	}
	if wait := ctr.StartupProbe.PeriodSeconds * ctr.StartupProbe.FailureThreshold; wait < 120 {
		t.Errorf("the startup probe gives the controller %d s to reach controldb, want at least 120", wait)
	}
}
