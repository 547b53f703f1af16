package image_test

import (
	"archive/tar"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/outpostdata/outpost/bundle/image"
	"github.com/outpostdata/outpost/test/harness"
)

// writeTar writes a layer tar holding the named directories; the tests of
// configs and layer sharing do not need the real base layer's 200 MB.
func writeTar(t *testing.T, path string, dirs ...string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

// build builds both images from a small base layer and a stand-in binary.
func build(t *testing.T, dir, binary string) image.Built {
	t.Helper()
	base := filepath.Join(t.TempDir(), "base.tar")
	writeTar(t, base, "etc", "var")
	built, err := image.Build(context.Background(), image.Spec{BaseLayer: base, Outpost: binary, Tag: "test", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return built
}

// readImage reads an image back from its archive, as an importer would.
func readImage(t *testing.T, a image.Archive) v1.Image {
	t.Helper()
	tag, err := name.NewTag(a.Ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(a.Path, &tag)
	if err != nil {
		t.Fatalf("reading %s from %s: %v", a.Ref, a.Path, err)
	}
	return img
}

func finalStage(t *testing.T, name string) harness.DockerfileStage {
	t.Helper()
	stages, err := harness.ReadDockerfile(filepath.Join(harness.RepoRoot(), "scripts", "images", name))
	if err != nil {
		t.Fatal(err)
	}
	return stages[len(stages)-1]
}

// dockerfileMismatches lists where an image config differs from what a
// Dockerfile's final stage says: user, entrypoint, command, exposed ports,
// and where the outpost binary is copied to.
func dockerfileMismatches(stage harness.DockerfileStage, cfg v1.Config) []string {
	var out []string
	if u := stage.Last("USER"); u != cfg.User {
		out = append(out, "USER "+u+" but the image's user is "+cfg.User)
	}
	for _, kw := range []string{"ENTRYPOINT", "CMD"} {
		var want []string
		if err := json.Unmarshal([]byte(stage.Last(kw)), &want); err != nil {
			out = append(out, kw+" is not a JSON array: "+err.Error())
			continue
		}
		got := cfg.Entrypoint
		if kw == "CMD" {
			got = cfg.Cmd
		}
		if !slices.Equal(want, got) {
			out = append(out, kw+" "+strings.Join(want, " ")+" but the image has "+strings.Join(got, " "))
		}
	}
	var ports []string
	for _, e := range stage.Values("EXPOSE") {
		for _, p := range strings.Fields(e) {
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			ports = append(ports, p)
		}
	}
	var got []string
	for p := range cfg.ExposedPorts {
		got = append(got, p)
	}
	slices.Sort(ports)
	slices.Sort(got)
	if !slices.Equal(ports, got) {
		out = append(out, "EXPOSE "+strings.Join(ports, " ")+" but the image exposes "+strings.Join(got, " "))
	}
	copied := false
	for _, c := range stage.Values("COPY") {
		f := strings.Fields(c)
		if len(f) >= 2 && strings.HasSuffix(f[len(f)-2], "/outpost") {
			copied = true
			if dst := f[len(f)-1]; len(cfg.Entrypoint) == 0 || dst != cfg.Entrypoint[0] {
				out = append(out, "COPY puts outpost at "+dst+" but the image's entrypoint is "+strings.Join(cfg.Entrypoint, " "))
			}
		}
	}
	if !copied {
		out = append(out, "no COPY of the outpost binary")
	}
	return out
}

func TestImagesDescribeTheSameImagesAsTheDockerfiles(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "outpost-bin")
	writeFile(t, bin, "#!/bin/sh\n")
	built := build(t, dir, bin)
	for _, c := range []struct {
		dockerfile string
		archive    image.Archive
	}{
		{"controller.Dockerfile", built.Controller},
		{"instance.Dockerfile", built.Instance},
	} {
		cf, err := readImage(t, c.archive).ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range dockerfileMismatches(finalStage(t, c.dockerfile), cf.Config) {
			t.Errorf("%s and %s differ: %s", c.dockerfile, c.archive.Ref, m)
		}
		if cf.OS != "linux" {
			t.Errorf("%s: os %q, want linux", c.archive.Ref, cf.OS)
		}
	}
}

// TestDockerfileComparisonCatchesADrift is the control: a change to either
// recipe, in any field the comparison covers, is reported.
func TestDockerfileComparisonCatchesADrift(t *testing.T) {
	stage := finalStage(t, "instance.Dockerfile")
	if m := dockerfileMismatches(stage, image.InstanceConfig()); len(m) != 0 {
		t.Fatalf("the instance recipes differ before any change: %v", m)
	}
	drifts := map[string]func(*harness.DockerfileStage, *v1.Config){
		"Dockerfile USER": func(s *harness.DockerfileStage, _ *v1.Config) {
			s.Instructions = append(s.Instructions, harness.DockerInstruction{Keyword: "USER", Args: "postgres"})
		},
		"Dockerfile CMD": func(s *harness.DockerfileStage, _ *v1.Config) {
			s.Instructions = append(s.Instructions, harness.DockerInstruction{Keyword: "CMD", Args: `["instance"]`})
		},
		"Dockerfile EXPOSE": func(s *harness.DockerfileStage, _ *v1.Config) {
			s.Instructions = append(s.Instructions, harness.DockerInstruction{Keyword: "EXPOSE", Args: "9187"})
		},
		"Dockerfile COPY": func(s *harness.DockerfileStage, _ *v1.Config) {
			s.Instructions = append(s.Instructions, harness.DockerInstruction{Keyword: "COPY", Args: "/out/outpost /bin/outpost"})
		},
		"image user":          func(_ *harness.DockerfileStage, c *v1.Config) { c.User = "0:0" },
		"image entrypoint":    func(_ *harness.DockerfileStage, c *v1.Config) { c.Entrypoint = []string{"/bin/outpost"} },
		"image exposed ports": func(_ *harness.DockerfileStage, c *v1.Config) { delete(c.ExposedPorts, "8008/tcp") },
		"image command":       func(_ *harness.DockerfileStage, c *v1.Config) { c.Cmd = []string{"instance", "run", "--x"} },
	}
	for what, drift := range drifts {
		s := stage
		s.Instructions = slices.Clone(stage.Instructions)
		cfg := image.InstanceConfig()
		drift(&s, &cfg)
		if m := dockerfileMismatches(s, cfg); len(m) == 0 {
			t.Errorf("a change to the %s went unnoticed", what)
		}
	}
}

func layerDigests(t *testing.T, img v1.Image) []string {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.String())
	}
	return out
}

func TestBothImagesShareTheirLayersAndANewBinaryChangesOnlyTheThinOne(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "outpost-bin")
	writeFile(t, bin, "one\n")
	first := build(t, filepath.Join(dir, "a"), bin)
	ctl, inst := layerDigests(t, readImage(t, first.Controller)), layerDigests(t, readImage(t, first.Instance))
	if len(ctl) != 2 || !slices.Equal(ctl, inst) {
		t.Fatalf("controller layers %v and instance layers %v: want the same two", ctl, inst)
	}
	again := build(t, filepath.Join(dir, "b"), bin)
	if a, b := layerDigests(t, readImage(t, again.Instance)), inst; !slices.Equal(a, b) {
		t.Errorf("the same binary gave layers %v, then %v: the thin layer is not reproducible", b, a)
	}
	writeFile(t, bin, "two\n")
	changed := layerDigests(t, readImage(t, build(t, filepath.Join(dir, "c"), bin).Instance))
	if changed[0] != inst[0] || changed[1] == inst[1] {
		t.Errorf("a new binary gave layers %v after %v: want the same base and a new thin layer", changed, inst)
	}
}

func TestBuildNamesWhatIsMissing(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "outpost-bin")
	writeFile(t, bin, "x\n")
	base := filepath.Join(dir, "base.tar")
	writeTar(t, base, "etc")
	for _, c := range []struct {
		spec image.Spec
		want string
	}{
		{image.Spec{BaseLayer: filepath.Join(dir, "nope.tar"), Outpost: bin, Tag: "t", Dir: dir}, `nope\.tar.*install-deps\.sh`},
		{image.Spec{BaseLayer: base, Outpost: filepath.Join(dir, "no-binary"), Tag: "t", Dir: dir}, `outpost binary.*no-binary`},
		{image.Spec{BaseLayer: base, Outpost: bin, Tag: "Bad Tag", Dir: dir}, `Bad Tag`},
		{image.Spec{BaseLayer: base, Outpost: bin, Dir: dir}, `Tag is empty`},
	} {
		_, err := image.Build(context.Background(), c.spec)
		if err == nil || !regexp.MustCompile(c.want).MatchString(err.Error()) {
			t.Errorf("Build(%+v) = %v, want an error matching %q", c.spec, err, c.want)
		}
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*.tar*"))
	if len(left) != 1 { // base.tar alone: nothing half-written is left
		t.Errorf("files left after failed builds: %v", left)
	}
}

// TestDefaultBaseLayerIsWhereInstallDepsPutsIt ties the default path to
// scripts/install-deps.sh's image_base and to the tests' harness.
func TestDefaultBaseLayerIsWhereInstallDepsPutsIt(t *testing.T) {
	t.Setenv("OUTPOST_TOOLS_DIR", "/srv/tools")
	script, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "scripts", "install-deps.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^image_base=\$tools/(\S+)$`).FindSubmatch(script)
	if m == nil {
		t.Fatal("install-deps.sh no longer sets image_base=$tools/...")
	}
	if want := filepath.Join("/srv/tools", string(m[1])); image.DefaultBaseLayer() != want {
		t.Errorf("DefaultBaseLayer() = %s, but install-deps.sh writes %s", image.DefaultBaseLayer(), want)
	}
	if got := filepath.Join(filepath.Dir(harness.ToolsBin()), string(m[1])); got != image.DefaultBaseLayer() {
		t.Errorf("the harness looks for the base layer at %s, not %s", got, image.DefaultBaseLayer())
	}
}
