package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpostdata/outpost/test/fixtures"
)

// The single host refuses exactly what the apiserver refuses: every bad
// spec of the shared table, refused parameters and path-traversing names
// among them, is refused by the real `outpost apply`, naming the file and
// the field, and nothing is written.
func TestApplyRefusesEveryBadSpecNamingTheField(t *testing.T) {
	s := newSite(t) // a state directory only; no `outpost up` is needed to apply
	manifests := filepath.Join(s.stateDir, "manifests")
	if err := os.MkdirAll(manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, tc := range fixtures.BadSpecs {
		t.Run(tc.Name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "bad.yaml")
			if err := os.WriteFile(file, []byte(fixtures.Named(tc.Manifest, fmt.Sprintf("bad-%d", i))), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := s.tryOutpost("apply", "-f", file)
			if err == nil {
				t.Fatalf("outpost apply accepted the bad spec:\n%s", out)
			}
			for _, want := range append([]string{"bad.yaml:" + tc.Field}, tc.WantInMessage...) {
				if !strings.Contains(out, want) {
					t.Errorf("outpost apply's message does not mention %q:\n%s", want, out)
				}
			}
		})
	}
	if entries, _ := os.ReadDir(manifests); len(entries) != 0 {
		t.Errorf("outpost apply wrote %d files for refused manifests", len(entries))
	}

	// The control: the same command applies a valid spec.
	good := filepath.Join(t.TempDir(), "good.yaml")
	os.WriteFile(good, []byte(fixtures.Named(fixtures.ValidInstance, "good")), 0o644)
	if out, err := s.tryOutpost("apply", "-f", good); err != nil {
		t.Fatalf("outpost apply refused a valid spec: %v\n%s", err, out)
	}
}
