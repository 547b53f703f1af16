package image_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/outpostdata/outpost/bundle/image"
	"github.com/outpostdata/outpost/test/harness"
)

var outpostBin string

func TestMain(m *testing.M) { harness.RunWithOutpost(m, &outpostBin) }

// buildReal builds both images from the real base layer and the real
// outpost binary.
func buildReal(t *testing.T) (image.Built, string) {
	t.Helper()
	dir := harness.TempDir(t)
	built, err := image.Build(context.Background(), image.Spec{BaseLayer: harness.ImageBaseLayer(t), Outpost: outpostBin, Tag: "test", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return built, dir
}

// layerBlobs is the subset of a containerd's blobs that are layers: the
// configs and manifests are a few hundred bytes.
func layerBlobs(blobs map[string]int64) []string {
	var out []string
	for d, n := range blobs {
		if n > 64<<10 {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out
}

// TestContainerdImportsBothImagesAndStoresTheLayersOnce imports the real
// images into a real containerd, the way a node gets them without a
// registry.
func TestContainerdImportsBothImagesAndStoresTheLayersOnce(t *testing.T) {
	built, dir := buildReal(t)
	cd := harness.StartContainerd(t)
	cd.Ctr(t, "images", "import", built.Controller.Path)
	first := layerBlobs(cd.Blobs(t))
	if len(first) != 2 {
		t.Fatalf("after importing the controller image containerd holds layers %v, want the base and the outpost layer", first)
	}
	cd.Ctr(t, "images", "import", built.Instance.Path)
	if second := layerBlobs(cd.Blobs(t)); !slices.Equal(first, second) {
		t.Errorf("importing the instance image changed the stored layers from %v to %v: the images do not share them", first, second)
	}
	refs := cd.Refs(t)
	for _, want := range []string{built.Controller.Ref, built.Instance.Ref} {
		if !slices.Contains(refs, want) {
			t.Errorf("containerd lists %v, not %s", refs, want)
		}
	}

	// The next build, with another binary, adds one layer: its own.
	next := filepath.Join(dir, "outpost-next")
	copyFile(t, outpostBin, next)
	appendBytes(t, next, "\nnext build\n")
	archive := filepath.Join(dir, "next.tar")
	if err := image.BuildArchive(context.Background(), image.Spec{BaseLayer: harness.ImageBaseLayer(t), Outpost: next, Tag: "next", Dir: dir}, archive); err != nil {
		t.Fatal(err)
	}
	cd.Ctr(t, "images", "import", archive)
	third := layerBlobs(cd.Blobs(t))
	if added := len(third) - len(first); added != 1 || !slices.Contains(third, first[0]) || !slices.Contains(third, first[1]) {
		t.Errorf("a build with a new binary left layers %v after %v: want exactly one more", third, first)
	}
	refs = cd.Refs(t)
	for _, want := range []string{image.ControllerRepository + ":next", image.InstanceRepository + ":next"} {
		if !slices.Contains(refs, want) {
			t.Errorf("containerd lists %v after importing the combined archive, not %s", refs, want)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

func appendBytes(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
