package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpostdata/outpost/test/harness"
)

// dataController is what `outpost get dc -o json` says of the site.
type dataController struct {
	Spec struct {
		Site struct {
			Labels map[string]string `json:"labels"`
		} `json:"site"`
	} `json:"spec"`
	Status struct {
		SigningKeyFingerprint string `json:"signingKeyFingerprint"`
		LastExportTime        string `json:"lastExportTime"`
		Conditions            []struct {
			Type, Status, Reason string
		} `json:"conditions"`
	} `json:"status"`
}

func (s *site) dataController() (dataController, bool) {
	s.t.Helper()
	var list struct {
		Items []dataController `json:"items"`
	}
	out := s.outpost("get", "dc", "-o", "json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		s.t.Fatalf("outpost get dc -o json: %v\n%s", err, out)
	}
	if len(list.Items) != 1 {
		return dataController{}, false
	}
	return list.Items[0], true
}

func (d dataController) condition(typ string) string {
	for _, c := range d.Status.Conditions {
		if c.Type == typ {
			return c.Status + "/" + c.Reason
		}
	}
	return ""
}

// TestSingleHostDataControllerStatusSurvivesManifestPasses: `outpost up`
// writes the DataController's usage status every metering interval while
// the manifest source stores the object again on every pass (each spec edit
// here is one). A DataController added to a running site gets its status at
// once; after every edit the status is there, with the export's time once
// there was one, and the exported file verifies against `usage key`. The
// exact interleaving of the two writers that used to lose status updates is
// reproduced deterministically in controller/dirsource.
func TestSingleHostDataControllerStatusSurvivesManifestPasses(t *testing.T) {
	s := newSite(t)
	s.start()
	site := func(labels string) string {
		return fmt.Sprintf(`apiVersion: outpost.dev/v1alpha1
kind: DataController
metadata: {name: site}
spec:
  site: {name: plant-7, labels: {%s}}
  metering: {interval: 1s}
`, labels)
	}
	s.writeManifest("site.yaml", site("edit: e0"))
	var fingerprint string
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := s.tryOutpost("get", "dc", "-o", "json")
			t.Logf("outpost get dc -o json:\n%s\nlog:\n%s", out, s.log())
		}
	})
	waitFor(t, 30*time.Second, "the usage status of dc/site", func() bool {
		dc, ok := s.dataController()
		fingerprint = dc.Status.SigningKeyFingerprint
		return ok && fingerprint != "" && dc.condition("Ready") == "True/Metering" && dc.condition("UsageExported") == "True/Fresh"
	})

	if _, info := s.outpostSplit("usage", "key"); !strings.Contains(info, fingerprint) {
		t.Errorf("outpost usage key: %q does not name the status fingerprint %s", info, fingerprint)
	}

	// Every spec edit is a manifest pass storing the object while the
	// status is written every second. Once `get` shows the edit as
	// reconciled (until then it shows the manifest as pending, without
	// status), the status is there, on every read.
	for i := 1; i <= 20; i++ {
		edit := fmt.Sprintf("e%d", i)
		s.writeManifest("site.yaml", site("edit: "+edit))
		waitFor(t, 30*time.Second, "edit "+edit+" reconciled", func() bool {
			dc, ok := s.dataController()
			return ok && dc.Spec.Site.Labels["edit"] == edit && len(dc.Status.Conditions) > 0
		})
		for range 3 {
			dc, ok := s.dataController()
			if !ok || dc.Status.SigningKeyFingerprint != fingerprint || dc.condition("Ready") != "True/Metering" {
				t.Fatalf("after edit %d the status read back as %+v", i, dc.Status)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// The export's time reaches the status and stays through more passes.
	month := time.Now().UTC().Format("2006-01")
	file := filepath.Join(harness.TempDir(t), "usage.outpost-usage")
	s.outpost("usage", "export", "--month", month, "-o", file)
	pub, _ := s.outpostSplit("usage", "key")
	if out, err := exec.Command(outpostBin, "usage", "verify", file, "--public-key", pub).CombinedOutput(); err != nil {
		t.Fatalf("outpost usage verify: %v\n%s", err, out)
	}
	waitFor(t, 30*time.Second, "status.lastExportTime after the export", func() bool {
		dc, _ := s.dataController()
		return dc.Status.LastExportTime != ""
	})
	for i := 21; i <= 25; i++ {
		edit := fmt.Sprintf("e%d", i)
		s.writeManifest("site.yaml", site("edit: "+edit))
		waitFor(t, 30*time.Second, "edit "+edit+" reconciled with lastExportTime", func() bool {
			dc, ok := s.dataController()
			return ok && dc.Spec.Site.Labels["edit"] == edit && dc.Status.LastExportTime != ""
		})
	}
}

// outpostSplit runs a CLI command against the site and returns its
// standard output (trimmed) and standard error apart.
func (s *site) outpostSplit(args ...string) (string, string) {
	s.t.Helper()
	cmd := exec.Command(outpostBin, append(args, "--state-dir", s.stateDir)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		s.t.Fatalf("outpost %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return strings.TrimSpace(string(out)), stderr.String()
}
