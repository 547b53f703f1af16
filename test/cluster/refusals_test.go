package cluster

import (
	"fmt"
	"strings"
	"testing"

	"github.com/outpostdata/outpost/test/fixtures"
)

// Every bad spec of the shared table is refused by `kubectl apply` on the
// cluster, with the CRDs as helm installed them, naming the field; none
// is stored. The control: each valid manifest passes the same server-side
// checks (a server-side dry run, so nothing starts).
func TestKubectlApplyRefusesBadFieldsNamingThem(t *testing.T) {
	explainOnFailure(t)
	installOutpost(t)
	for i, tc := range fixtures.BadSpecs {
		t.Run(tc.Name, func(t *testing.T) {
			name := fmt.Sprintf("bad-%d", i)
			out, err := tryKubectl(t, fixtures.Named(tc.Manifest, name), "apply", "-f", "-")
			if err == nil {
				t.Fatalf("kubectl apply accepted the bad spec:\n%s", out)
			}
			for _, want := range append([]string{tc.Field}, tc.WantInMessage...) {
				if !strings.Contains(out, want) {
					t.Errorf("kubectl apply's message does not mention %q:\n%s", want, out)
				}
			}
		})
	}
	if out := kubectl(t, "", "get", "outpost", "-A", "-o", "name"); strings.Contains(out, "/bad-") {
		t.Errorf("refused objects were stored:\n%s", out)
	}
	for _, m := range fixtures.Valid {
		if out, err := tryKubectl(t, fixtures.Named(m, "good"), "apply", "--dry-run=server", "-f", "-"); err != nil {
			t.Errorf("kubectl apply --dry-run=server refused a valid spec: %v\n%s", err, out)
		}
	}
}
