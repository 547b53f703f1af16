package bundle_test

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

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
	// The bundle carries the binary that made it, alone and in the images.
	want := fileSHA(t, outpost)
	if got := fileSHA(t, filepath.Join(dir, "outpost")); got != want {
		t.Errorf("the bundle's outpost binary is sha256 %s, not the %s that made it", got, want)
	}
	if got := imageBinarySHA(t, filepath.Join(dir, "images.tar"), instanceRef); got != want {
		t.Errorf("the instance image's /usr/local/bin/outpost is sha256 %s, not the %s that made the bundle", got, want)
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

	// A second import (another node's turn, or a retry) replaces the
	// extraction and loads again.
	r = run(t, nil, "bundle", "import", file, "--public-key", pub, "--containerd-address", cd.Socket)
	if r.code != 0 {
		t.Errorf("a second import: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// A --dir that holds something else is never replaced.
	other := harness.TempDir(t)
	keep := filepath.Join(other, "notes.txt")
	if err := os.WriteFile(keep, []byte("mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = run(t, nil, "bundle", "import", file, "--dir", other, "--containerd-address", cd.Socket)
	if r.code == 0 || !strings.Contains(r.stderr, other+" exists and is not an extracted bundle") {
		t.Errorf("import into a directory of other files: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("import into a directory of other files lost them: %v", err)
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

// TestImportRefusesEntriesThatWouldLandOutsideItsDirectory crafts tars a
// bundle never holds: a path climbing out, an absolute path, a symbolic
// link. Import refuses each before writing anything.
func TestImportRefusesEntriesThatWouldLandOutsideItsDirectory(t *testing.T) {
	cd := harness.StartContainerd(t)
	for _, c := range []struct {
		name string
		hdr  tar.Header
		want string
	}{
		{"climbing out", tar.Header{Typeflag: tar.TypeReg, Name: "../escaped", Mode: 0o644, Size: 2}, `"../escaped": not a plain relative file name`},
		{"absolute", tar.Header{Typeflag: tar.TypeReg, Name: "/tmp/escaped", Mode: 0o644, Size: 2}, `"/tmp/escaped": not a plain relative file name`},
		{"a symbolic link", tar.Header{Typeflag: tar.TypeSymlink, Name: "chart", Linkname: "/etc"}, "chart: not a regular file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(harness.TempDir(t), "site")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, "evil.tar")
			f, err := os.Create(file)
			if err != nil {
				t.Fatal(err)
			}
			tw := tar.NewWriter(f)
			if err := tw.WriteHeader(&c.hdr); err != nil {
				t.Fatal(err)
			}
			if c.hdr.Size > 0 {
				if _, err := tw.Write([]byte("x\n")); err != nil {
					t.Fatal(err)
				}
			}
			if err := tw.Close(); err != nil {
				t.Fatal(err)
			}
			f.Close()
			r := run(t, nil, "bundle", "import", file, "--containerd-address", cd.Socket)
			if r.code == 0 || !strings.Contains(r.stderr, c.want) {
				t.Errorf("import of a tar with an entry %s: exit %d, stderr %q; want %q", c.name, r.code, r.stderr, c.want)
			}
			for _, p := range []string{filepath.Join(filepath.Dir(dir), "escaped"), filepath.Join(dir, "escaped"), "/tmp/escaped"} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was written", p)
				}
			}
		})
	}
}

func fileSHA(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// imageBinarySHA is the sha256 of /usr/local/bin/outpost in ref's file
// system, read from a docker archive.
func imageBinarySHA(t *testing.T, archive, ref string) string {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(archive, &tag)
	if err != nil {
		t.Fatalf("%s in %s: %v", ref, archive, err)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("/usr/local/bin/outpost not found in %s: %v", ref, err)
		}
		if strings.TrimPrefix(h.Name, "./") == "usr/local/bin/outpost" {
			sum := sha256.New()
			if _, err := io.Copy(sum, tr); err != nil {
				t.Fatal(err)
			}
			return hex.EncodeToString(sum.Sum(nil))
		}
	}
}
