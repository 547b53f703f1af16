package bundle_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/outpostdata/outpost/bundle/image"
	"github.com/outpostdata/outpost/test/harness"
)

var helmLine = regexp.MustCompile(`(?m)^\s+(helm install .*)$`)

// TestImportLoadsTheImagesIntoContainerdAndPrintsAHelmLineThatUsesThem
// imports a real bundle into a real containerd, after a damaged copy of it
// was refused with nothing loaded; then renders the chart with exactly the
// printed helm arguments.
func TestImportLoadsTheImagesIntoContainerdAndPrintsAHelmLineThatUsesThem(t *testing.T) {
	file, pub := create(t, harness.ImageBaseLayer(t))
	cd := harness.StartContainerd(t)
	dir := filepath.Join(filepath.Dir(file), "outpost-bundle")

	restore := flipInside(t, file, "outpost")
	r := run(t, nil, "bundle", "import", file, "--public-key", pub, "--containerd-address", cd.Socket)
	if r.code == 0 || !strings.Contains(r.stderr, "outpost: sha256") {
		t.Fatalf("import of a damaged bundle: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if refs := cd.Refs(t); len(refs) != 0 {
		t.Errorf("a damaged bundle's images were loaded: %v", refs)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("a damaged bundle was extracted to %s (stat: %v)", dir, err)
	}
	restore()

	r = run(t, nil, "bundle", "import", file, "--public-key", pub, "--containerd-address", cd.Socket)
	if r.code != 0 {
		t.Fatalf("bundle import: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("outpost bundle import:\n%s", r.stdout)
	m := helmLine.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("bundle import printed no helm install line:\n%s", r.stdout)
	}
	tag := regexp.MustCompile(`image\.tag=(\S+)`).FindStringSubmatch(m[1])
	if tag == nil {
		t.Fatalf("the helm line sets no image.tag: %s", m[1])
	}
	refs := cd.Refs(t)
	controllerRef, instanceRef := image.ControllerRepository+":"+tag[1], image.InstanceRepository+":"+tag[1]
	for _, want := range []string{controllerRef, instanceRef} {
		if !slices.Contains(refs, want) {
			t.Errorf("containerd lists %v after the import, not %s", refs, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "chart", "outpost", "crds", "outpost.dev_postgresinstances.yaml")); err != nil {
		t.Errorf("the chart's CRDs were not extracted: %v", err)
	}

	// The printed line, with install swapped for template, renders pods
	// that run the loaded images and never pull.
	args := strings.Fields(m[1])
	if args[1] != "install" {
		t.Fatalf("unexpected helm line %q", m[1])
	}
	args[1] = "template"
	out, err := exec.Command(harness.Tool(t, "helm"), args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args[1:], " "), err, out)
	}
	rendered := string(out)
	for _, want := range []string{
		"image: " + controllerRef,
		"image: " + instanceRef,
		"--instance-image=" + instanceRef,
		"--instance-image-pull-policy=Never",
	} {
		if !strings.Contains(rendered, want) {
			t.Errorf("the chart rendered with the printed values has no %q", want)
		}
	}
	if strings.Contains(rendered, "imagePullPolicy: IfNotPresent") || strings.Contains(rendered, "imagePullPolicy: Always") {
		t.Errorf("the chart rendered with the printed values may pull an image:\n%s", rendered)
	}
}

// TestImportWithoutContainerdOrDockerSaysSo runs import where neither
// runtime can be reached: the user learns which, and nothing is extracted.
func TestImportWithoutContainerdOrDockerSaysSo(t *testing.T) {
	file, pub := create(t, smallBaseLayer(t))
	dir := filepath.Join(filepath.Dir(file), "outpost-bundle")
	empty := harness.TempDir(t)
	onlyCtr := harness.TempDir(t)
	if err := os.Symlink(harness.SystemBinary(t, "ctr"), filepath.Join(onlyCtr, "ctr")); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(empty, "no-containerd.sock")
	for _, c := range []struct {
		name, path string
		want       []string
	}{
		{"neither on PATH", empty, []string{"ctr (containerd's client) is not on PATH", "docker is not on PATH"}},
		{"ctr without its socket", onlyCtr, []string{"containerd's socket " + missing + " is not there", "docker is not on PATH"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, []string{"PATH=" + c.path}, "bundle", "import", file, "--public-key", pub, "--containerd-address", missing)
			if r.code == 0 {
				t.Fatalf("import succeeded with no runtime:\n%s", r.stdout)
			}
			for _, w := range c.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("import error %q does not say %q", r.stderr, w)
				}
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("the bundle was extracted to %s although nothing could load it (stat: %v)", dir, err)
			}
		})
	}
}
