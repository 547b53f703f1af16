package image_test

import (
	"archive/tar"
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/outpostdata/outpost/bundle/image"
	"github.com/outpostdata/outpost/test/harness"
)

var outpostBin string

func TestMain(m *testing.M) { harness.RunWithOutpost(m, &outpostBin) }

// realBaseLayer is the base layer scripts/install-deps.sh built; a test
// that needs it fails when it is missing.
func realBaseLayer(t *testing.T) string {
	t.Helper()
	p := image.DefaultBaseLayer()
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("base layer %s not found: run `make deps` (scripts/install-deps.sh, step image-base): %v", p, err)
	}
	return p
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
	dir := harness.TempDir(t)
	built, err := image.Build(context.Background(), image.Spec{BaseLayer: realBaseLayer(t), Outpost: outpostBin, Tag: "test", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
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
	if err := image.BuildArchive(context.Background(), image.Spec{BaseLayer: realBaseLayer(t), Outpost: next, Tag: "next", Dir: dir}, archive); err != nil {
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

// TestInstanceImageHoldsPostgresPgvectorAndOutpost unpacks the instance
// image's file system, as a runtime would, and checks the Dockerfile's
// contract: postgres is 999, the binaries are there, no default cluster.
func TestInstanceImageHoldsPostgresPgvectorAndOutpost(t *testing.T) {
	dir := harness.TempDir(t)
	built, err := image.Build(context.Background(), image.Spec{BaseLayer: realBaseLayer(t), Outpost: outpostBin, Tag: "test", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	files := rootfs(t, built.Instance)
	st, err := os.Stat(outpostBin)
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := files["usr/local/bin/outpost"]; !ok || h.Size != st.Size() || h.Mode&0o111 == 0 {
		t.Errorf("/usr/local/bin/outpost in the image: %+v, want the %d-byte executable", h, st.Size())
	}
	for _, want := range []string{
		"usr/lib/postgresql/15/bin/postgres",
		"usr/lib/postgresql/15/bin/initdb",
		"usr/lib/postgresql/15/bin/pg_ctl",
		"usr/lib/postgresql/15/lib/vector.so",
		"usr/share/postgresql/15/extension/vector.control",
		"etc/ssl/certs/ca-certificates.crt",
	} {
		if _, ok := files[want]; !ok {
			t.Errorf("/%s is not in the instance image", want)
		}
	}
	// The data, socket and config directories, as instance.Dockerfile
	// makes them, belong to postgres.
	for _, d := range []string{image.DataDir, "/var/run/postgresql", "/etc/outpost"} {
		h := files[strings.Trim(resolve(files, d), "/")+"/"]
		if h == nil || h.Uid != 999 || h.Gid != 999 {
			t.Errorf("%s in the instance image: %+v, want a directory owned by 999:999", d, h)
		}
	}
	for _, gone := range []string{"var/lib/postgresql/15/", "etc/postgresql/15/"} {
		if _, ok := files[gone]; ok {
			t.Errorf("/%s is in the image: Debian's default cluster was not removed", gone)
		}
	}
	if line := passwdEntry(t, built.Instance, "etc/passwd", "postgres"); !strings.HasPrefix(line, "postgres:x:999:999:") {
		t.Errorf("postgres in /etc/passwd is %q, want uid and gid 999", line)
	}
	if line := passwdEntry(t, built.Instance, "etc/group", "postgres"); !strings.HasPrefix(line, "postgres:x:999:") {
		t.Errorf("postgres in /etc/group is %q, want gid 999", line)
	}
}

// rootfs reads the image's flattened file system: every entry's header, by
// path without a leading slash, directories with a trailing one.
func rootfs(t *testing.T, a image.Archive) map[string]*tar.Header {
	t.Helper()
	rc := mutate.Extract(readImage(t, a))
	defer rc.Close()
	files := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("unpacking %s: %v", a.Ref, err)
		}
		n := strings.TrimPrefix(h.Name, "./")
		if h.Typeflag == tar.TypeDir && !strings.HasSuffix(n, "/") {
			n += "/"
		}
		files[n] = h
	}
}

// resolve follows a symbolic link at path's start (Debian makes
// /var/run a link to /run).
func resolve(files map[string]*tar.Header, p string) string {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	for i := range parts {
		prefix := strings.Join(parts[:i+1], "/")
		if h, ok := files[prefix]; ok && h.Typeflag == tar.TypeSymlink {
			target := strings.Trim(h.Linkname, "/")
			if !strings.HasPrefix(h.Linkname, "/") {
				target = filepath.Join(filepath.Dir(prefix), h.Linkname)
			}
			return resolve(files, filepath.Join(append([]string{target}, parts[i+1:]...)...))
		}
	}
	return p
}

// passwdEntry returns the line for name in a passwd-style file in the image.
func passwdEntry(t *testing.T, a image.Archive, file, name string) string {
	t.Helper()
	rc := mutate.Extract(readImage(t, a))
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("/%s not found in %s: %v", file, a.Ref, err)
		}
		if strings.TrimPrefix(h.Name, "./") != file {
			continue
		}
		sc := bufio.NewScanner(tr)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), name+":") {
				return sc.Text()
			}
		}
		return ""
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
