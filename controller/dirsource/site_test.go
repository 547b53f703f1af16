package dirsource

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

// TestBrokenSiteManifestKeepsTheLastDataController: while site.yaml is
// half-saved the site callback still gets the last accepted DataController
// (its listen address and direct mode stay in force), as other kinds keep
// their objects; only when the file is gone does the site have none.
func TestBrokenSiteManifestKeepsTheLastDataController(t *testing.T) {
	ctx := context.Background()
	c, _, dir := newTestController(t)
	path := filepath.Join(dir, "site.yaml")
	good := `apiVersion: outpost.dev/v1alpha1
kind: DataController
metadata: {name: site, namespace: default}
spec:
  site: {name: plant-7}
  connectivity: {mode: direct, hub: {url: "https://hub.example.com"}}
  localRuntime: {listenAddress: 127.0.0.2}
`
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var site *outpostv1.DataController
	c.OnSite(func(dc *outpostv1.DataController) { site = dc })

	write(good)
	c.pass(ctx)
	if site == nil || site.Spec.LocalRuntime.ListenAddress != "127.0.0.2" {
		t.Fatalf("site after a good site.yaml: %+v", site)
	}

	write(good[:len(good)/2] + "\n  : [\n")
	site = nil
	c.pass(ctx)
	if site == nil || site.Spec.LocalRuntime.ListenAddress != "127.0.0.2" || site.Spec.Connectivity.Mode != outpostv1.ConnectivityDirect {
		t.Errorf("site while site.yaml is half-saved: %+v; want the last accepted one", site)
	}

	// The control: a deleted site.yaml is no site.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	c.pass(ctx)
	if site != nil {
		t.Errorf("site after site.yaml was deleted: %+v, want none", site)
	}
}
