package bundle

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestDefaultTag checks that a release is tagged with its version and a
// development build by its contents, so two builds never share a tag.
func TestDefaultTag(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.WriteFile(a, []byte("one build"), 0o755)
	os.WriteFile(b, []byte("another build"), 0o755)
	if tag, err := DefaultTag("v1.2.3+linux", a); err != nil || tag != "v1.2.3-linux" {
		t.Errorf("release: %q, %v", tag, err)
	}
	devA, errA := DefaultTag("devel", a)
	devB, errB := DefaultTag("unknown", b)
	if errA != nil || errB != nil || !regexp.MustCompile(`^dev-[0-9a-f]{12}$`).MatchString(devA) || devA == devB {
		t.Errorf("development builds: %q, %v and %q, %v", devA, errA, devB, errB)
	}
	if _, err := DefaultTag("devel", filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing binary made a tag")
	}
}
