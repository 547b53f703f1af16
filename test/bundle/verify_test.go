package bundle_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVerifyRefusesEveryDamagedPartAndNamesIt damages each part of a real
// bundle on disk in turn. Each case is checked against the intact bundle
// verifying, before and after, so a verifier that refused everything would
// fail too.
func TestVerifyRefusesEveryDamagedPartAndNamesIt(t *testing.T) {
	file, pub := create(t, smallBaseLayer(t))
	verify := func(t *testing.T, f string, args ...string) result {
		return run(t, nil, append([]string{"bundle", "verify", f}, args...)...)
	}
	intact := func(t *testing.T) {
		t.Helper()
		r := verify(t, file, "--public-key", pub)
		if r.code != 0 || !strings.Contains(r.stdout, "OK") {
			t.Fatalf("the intact bundle does not verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	}
	intact(t)

	for _, c := range []struct {
		name   string
		damage func(t *testing.T) (restore func())
		want   string
	}{
		{"an image", func(t *testing.T) func() { return flipInside(t, file, "images.tar") }, "images.tar: sha256"},
		{"a chart file", func(t *testing.T) func() { return flipInside(t, file, "chart/outpost/values.yaml") }, "chart/outpost/values.yaml: sha256"},
		{"a CRD", func(t *testing.T) func() {
			return flipInside(t, file, "chart/outpost/crds/outpost.dev_postgresinstances.yaml")
		}, "chart/outpost/crds/outpost.dev_postgresinstances.yaml: sha256"},
		{"the binary", func(t *testing.T) func() { return flipInside(t, file, "outpost") }, "outpost: sha256"},
		{"SHA256SUMS", func(t *testing.T) func() {
			// images.tar's checksum rewritten, as for a swapped image:
			// the line keeps its form, only its last hex digit changes.
			off, size := entry(t, file, "SHA256SUMS")
			i := int64(strings.Index(string(readAt(t, file, off, size)), "  images.tar")) - 1
			next := byte('0')
			if readAt(t, file, off+i, 1)[0] == '0' {
				next = '1'
			}
			return patch(t, file, off+i, []byte{next})
		}, "SHA256SUMS was altered after it was signed"},
		{"the signature", func(t *testing.T) func() {
			return replaceInside(t, file, "SHA256SUMS.sig", `"signature":"`, `"signaturE":"`)
		}, "SHA256SUMS.sig:"},
		{"the signature's bytes", func(t *testing.T) func() {
			off, size := entry(t, file, "SHA256SUMS.sig")
			b := readAt(t, file, off, size)
			i := strings.Index(string(b), `"signature":"`) + len(`"signature":"`) + 5
			c := byte('A')
			if b[i] == 'A' {
				c = 'B'
			}
			return patch(t, file, off+int64(i), []byte{c})
		}, "SHA256SUMS.sig: signature does not match"},
	} {
		t.Run(c.name, func(t *testing.T) {
			restore := c.damage(t)
			r := verify(t, file, "--public-key", pub)
			t.Logf("outpost bundle verify: %s", strings.TrimSpace(r.stderr))
			if r.code == 0 || !strings.Contains(r.stderr, c.want) {
				t.Errorf("verify with %s damaged: exit %d, stderr %q; want a failure naming %q", c.name, r.code, r.stderr, c.want)
			}
			if strings.Contains(r.stdout, "OK") {
				t.Errorf("verify printed OK for a damaged bundle: %s", r.stdout)
			}
			restore()
			intact(t)
		})
	}

	t.Run("another key", func(t *testing.T) {
		r := verify(t, file, "--public-key", otherKey(t))
		if r.code == 0 || !strings.Contains(r.stderr, "not by the key you trust") {
			t.Errorf("verify against another key: exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("no key given", func(t *testing.T) {
		r := verify(t, file)
		if r.code != 0 || !strings.Contains(r.stderr, "pass --public-key") {
			t.Errorf("verify without --public-key: exit %d, stderr %q; want success and a note", r.code, r.stderr)
		}
	})
	t.Run("truncated inside a file", func(t *testing.T) {
		off, _ := entry(t, file, "outpost")
		r := verify(t, truncatedCopy(t, file, off+4096))
		if r.code == 0 || !strings.Contains(r.stderr, "truncated or unreadable in outpost") {
			t.Errorf("verify of a bundle cut inside the binary: exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("truncated between files", func(t *testing.T) {
		off, _ := entry(t, file, "SHA256SUMS")
		r := verify(t, truncatedCopy(t, file, off-512)) // before SHA256SUMS's header
		if r.code == 0 || !strings.Contains(r.stderr, "SHA256SUMS is missing") {
			t.Errorf("verify of a bundle cut before SHA256SUMS: exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("not a tar", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "notes.tar")
		if err := os.WriteFile(p, []byte(strings.Repeat("not a bundle\n", 100)), 0o644); err != nil {
			t.Fatal(err)
		}
		r := verify(t, p)
		if r.code == 0 || !strings.Contains(r.stderr, "not a tar file") {
			t.Errorf("verify of a text file: exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("a bad --public-key", func(t *testing.T) {
		r := verify(t, file, "--public-key", "ssh-ed25519 AAAA")
		if r.code == 0 || !strings.Contains(r.stderr, "--public-key") {
			t.Errorf("verify with a malformed key: exit %d, stderr %q", r.code, r.stderr)
		}
	})
}

func readAt(t *testing.T, file string, off, size int64) []byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, size)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCreateNamesWhatIsMissingAndLeavesNoFile covers create's bad input.
func TestCreateNamesWhatIsMissingAndLeavesNoFile(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "b.tar")
	missing := filepath.Join(dir, "no-base.tar")
	r := run(t, nil, "bundle", "create", "-o", out, "--base-layer", missing, "--signing-key", filepath.Join(dir, "k.pem"))
	if r.code == 0 || !strings.Contains(r.stderr, missing) || !strings.Contains(r.stderr, "install-deps.sh") {
		t.Errorf("create without a base layer: exit %d, stderr %q; want it named, and how to build it", r.code, r.stderr)
	}
	r = run(t, nil, "bundle", "create", "--signing-key", filepath.Join(dir, "k.pem"))
	if r.code == 0 || !strings.Contains(r.stderr, "-o/--output") {
		t.Errorf("create without -o: exit %d, stderr %q", r.code, r.stderr)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range left {
		if filepath.Base(f) != "k.pem" {
			t.Errorf("a failed create left %s", f)
		}
	}
}
