// Package bundle_test drives `outpost bundle create|verify|import` as a
// user would: the real binary, a real containerd, and bundles damaged on
// disk the way a bad copy or a tamperer would damage them.
package bundle_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/usageexport"
)

var outpost string

func TestMain(m *testing.M) { harness.RunWithOutpost(m, &outpost) }

type result struct {
	stdout, stderr string
	code           int
}

// run runs the outpost binary with env added to the test's environment.
func run(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(outpost, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("outpost %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// smallBaseLayer is a real layer tar, small: the verify tests are about the
// bundle's integrity, not about what the images hold.
func smallBaseLayer(t *testing.T) string {
	t.Helper()
	p := filepath.Join(harness.TempDir(t), "base.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	for _, d := range []string{"etc/", "usr/", "usr/local/", "usr/local/bin/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

var signedBy = regexp.MustCompile(`signed by (ed25519:\S+)`)

// create runs `outpost bundle create` and returns the bundle and the public
// key it printed.
func create(t *testing.T, baseLayer string) (file, pub string) {
	t.Helper()
	dir := harness.TempDir(t)
	file = filepath.Join(dir, "outpost-bundle.tar")
	r := run(t, nil, "bundle", "create", "-o", file, "--base-layer", baseLayer, "--signing-key", filepath.Join(dir, "key.pem"))
	if r.code != 0 {
		t.Fatalf("bundle create: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	m := signedBy.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("bundle create did not print its public key:\n%s", r.stdout)
	}
	return file, m[1]
}

// otherKey is a public key that did not sign anything here.
func otherKey(t *testing.T) string {
	t.Helper()
	_, key, err := usageexport.NewKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	return usageexport.FormatPublicKey(key.Public())
}

// entry returns where the named file's content starts in the bundle and its
// size.
func entry(t *testing.T, file, name string) (offset, size int64) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cr := &countingReader{r: f}
	tr := tar.NewReader(cr)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not found in %s: %v", name, file, err)
		}
		// archive/tar reads exactly the header blocks before returning.
		if h.Name == name {
			return cr.n, h.Size
		}
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// patch overwrites bytes at offset in file and puts them back when the
// test ends (or earlier, by calling the returned func).
func patch(t *testing.T, file string, offset int64, with []byte) (restore func()) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	old := make([]byte, len(with))
	if _, err := f.ReadAt(old, offset); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(with, offset); err != nil {
		t.Fatal(err)
	}
	done := false
	restore = func() {
		if done {
			return
		}
		done = true
		f, err := os.OpenFile(file, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(old, offset); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(restore)
	return restore
}

// flipInside changes one byte in the middle of the named file in the bundle.
func flipInside(t *testing.T, file, name string) func() {
	t.Helper()
	off, size := entry(t, file, name)
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	_, err = f.ReadAt(b, off+size/2)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	return patch(t, file, off+size/2, []byte{b[0] ^ 0x01})
}

// replaceInside changes the first occurrence of old, within the named
// file, to new (of the same length).
func replaceInside(t *testing.T, file, name, old, new string) func() {
	t.Helper()
	off, size := entry(t, file, name)
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, size)
	_, err = f.ReadAt(b, off)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte(old))
	if i < 0 || len(old) != len(new) {
		t.Fatalf("%q not in %s, or %q is not as long", old, name, new)
	}
	return patch(t, file, off+int64(i), []byte(new))
}

// truncatedCopy writes the first n bytes of file to a new file.
func truncatedCopy(t *testing.T, file string, n int64) string {
	t.Helper()
	src, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p := filepath.Join(harness.TempDir(t), "truncated.tar")
	dst, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(dst, src, n); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}
