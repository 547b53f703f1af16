// Package chart_test checks the Helm chart with helm itself, as a user would.
package chart_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpostdata/outpost/test/harness"
)

func chartDir() string { return filepath.Join(harness.RepoRoot(), "charts", "outpost") }

func TestChartLints(t *testing.T) {
	out, err := exec.Command(harness.Tool(t, "helm"), "lint", chartDir()).CombinedOutput()
	if err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "0 chart(s) failed") {
		t.Errorf("helm lint did not pass:\n%s", out)
	}
}

func TestChartShipsTheFiveCRDs(t *testing.T) {
	out, err := exec.Command(harness.Tool(t, "helm"), "show", "crds", chartDir()).CombinedOutput()
	if err != nil {
		t.Fatalf("helm show crds: %v\n%s", err, out)
	}
	for _, kind := range []string{"DataController", "PostgresInstance", "FeatureStore", "ObjectStore", "Backup"} {
		if !strings.Contains(string(out), "kind: "+kind+"\n") {
			t.Errorf("helm show crds has no CRD for kind %s", kind)
		}
	}
}
