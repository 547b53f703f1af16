package e2e

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpostdata/outpost/controller/controldb"
	"github.com/outpostdata/outpost/controller/singlehost"
	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/usageexport/hub"
)

// countingHub is a real hub on a real PostgreSQL that counts the batches
// it is sent.
type countingHub struct {
	*hub.Hub
	url     string
	batches atomic.Int64
}

func startCountingHub(t *testing.T) *countingHub {
	t.Helper()
	ctx := context.Background()
	pg := harness.StartPostgres(t)
	pool, err := hub.Open(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	h := &countingHub{Hub: &hub.Hub{Pool: pool, Log: slog.New(slog.DiscardHandler)}}
	inner := h.Handler()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/batches") {
			h.batches.Add(1)
		}
		inner.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	h.url = "http://" + l.Addr().String()
	return h
}

// TestHalfSavedSiteManifestKeepsInstancesOnTheirAddressAndDirectMode: a
// site.yaml caught mid-save is kept like any other kind's manifest: the
// instance stays on the DataController's listen address with the same
// postmaster (no restart), and direct mode stays on.
func TestHalfSavedSiteManifestKeepsInstancesOnTheirAddressAndDirectMode(t *testing.T) {
	h := startCountingHub(t)
	s := newSite(t)
	s.start()
	pub, _ := s.outpostSplit("usage", "key")
	token, err := h.AddSite(context.Background(), "plant-7", pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(singlehost.StateDir{Root: s.stateDir}.HubToken(), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := strings.Split(s.instances()["example"].Status.Endpoint, ":")[1]
	good := `apiVersion: outpost.dev/v1alpha1
kind: DataController
metadata: {name: site}
spec:
  site: {name: plant-7}
  connectivity: {mode: direct, hub: {url: "` + h.url + `", allowInsecureHub: true}}
  metering: {interval: 1s}
  localRuntime: {listenAddress: 127.0.0.2}
`
	s.writeManifest("site.yaml", good)
	waitFor(t, 60*time.Second, "example on 127.0.0.2 and the hub hearing from the site", func() bool {
		inst := s.instances()["example"]
		return inst.Status.Phase == "Running" && inst.Status.Endpoint == "127.0.0.2:"+port && h.batches.Load() > 0
	})
	pid := s.postmasterPID(s.instanceDataDir("example"))

	s.writeManifest("site.yaml", good[:len(good)/2]+"\n  : [\n")
	waitFor(t, 10*time.Second, "the broken site.yaml being reported", func() bool {
		return strings.Contains(s.outpost("get"), "site.yaml:")
	})
	// Direct mode is still on: it notices the hub token going (a site
	// without a DataController would not look for one).
	tokenFile := singlehost.StateDir{Root: s.stateDir}.HubToken()
	if err := os.Remove(tokenFile); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "Ready NoHubToken while site.yaml is half-saved (direct mode still on)", func() bool {
		dc, _ := s.dataController()
		return dc.condition("Ready") == "False/NoHubToken"
	})
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "Ready again with the token back", func() bool {
		dc, _ := s.dataController()
		return dc.condition("Ready") == "True/Metering"
	})
	if got := s.postmasterPID(s.instanceDataDir("example")); got != pid || !alive(pid) {
		t.Errorf("postmaster pid %d became %d while site.yaml was half-saved: the instance restarted", pid, got)
	}
	if inst := s.instances()["example"]; inst.Status.Phase != "Running" || inst.Status.Endpoint != "127.0.0.2:"+port {
		t.Errorf("example while site.yaml is half-saved: %s at %s, want Running at 127.0.0.2:%s", inst.Status.Phase, inst.Status.Endpoint, port)
	}
	if got := s.psql("example", "SELECT inet_server_addr()"); got != "127.0.0.2" {
		t.Errorf("psql reached %q while site.yaml is half-saved, want 127.0.0.2", got)
	}

	s.writeManifest("site.yaml", good)
	waitFor(t, 10*time.Second, "the error clearing", func() bool {
		return !strings.Contains(s.outpost("get"), "Rejected manifests")
	})
	if got := s.postmasterPID(s.instanceDataDir("example")); got != pid {
		t.Errorf("postmaster pid changed from %d to %d across a site.yaml hiccup", pid, got)
	}
}

// TestManifestDeletedWhileUpIsStoppedIsClosedAtItsLastSighting: the
// manifest of an instance is deleted while `outpost up` is stopped. A
// deleted file has no mtime, so on restart the instance is closed at the
// last time the controller saw it, before it stopped: the hours while the
// controller was down are not billed for it. The instance still declared
// stays billed through the downtime (its interval stays open).
func TestManifestDeletedWhileUpIsStoppedIsClosedAtItsLastSighting(t *testing.T) {
	s := newSite(t)
	s.start()
	s.writeManifest("keep.yaml", goodInstance("keep"))
	s.waitPhase("keep", "Running", 3*time.Minute)
	ctx := context.Background()
	ledger := func() map[string][2]*time.Time {
		t.Helper()
		db, err := controldb.ConnectLocal(ctx, singlehost.StateDir{Root: s.stateDir}.ControlDB())
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		rows, err := db.Pool.Query(ctx, `SELECT i.name, i.deleted_at, v.end_at FROM usage_instances i
			JOIN usage_intervals v USING (uid) WHERE v.end_at IS NULL OR v.end_at = i.deleted_at`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string][2]*time.Time{}
		for rows.Next() {
			var name string
			var deleted, end *time.Time
			if err := rows.Scan(&name, &deleted, &end); err != nil {
				t.Fatal(err)
			}
			out[name] = [2]*time.Time{deleted, end}
		}
		return out
	}
	waitFor(t, 30*time.Second, "both instances open in the ledger", func() bool {
		l := ledger()
		return len(l) == 2 && l["example"][1] == nil && l["keep"][1] == nil
	})
	time.Sleep(2 * time.Second)
	stoppedAt := time.Now()
	s.stop()
	if err := os.Remove(filepath.Join(s.stateDir, "manifests", "example.yaml")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second) // down time that must not be billed for example
	restartedAt := time.Now()
	s.start()
	waitFor(t, 60*time.Second, "example closed in the ledger", func() bool { return ledger()["example"][0] != nil })
	l := ledger()
	deleted := *l["example"][0]
	if !deleted.Before(stoppedAt.Add(time.Second)) || deleted.Before(stoppedAt.Add(-2*time.Minute)) {
		t.Errorf("example closed at %s; want its last sighting before the stop at %s (restart at %s)",
			deleted.Format(time.RFC3339), stoppedAt.Format(time.RFC3339), restartedAt.Format(time.RFC3339))
	}
	if k := l["keep"]; k[0] != nil || k[1] != nil {
		t.Errorf("keep, still declared, was closed (%v): a stopped `outpost up` must not stop billing", k)
	}
	t.Logf("example closed at %s; stopped at %s", deleted.Format(time.RFC3339), stoppedAt.Format(time.RFC3339))

	// Nothing was refused, so `usage retry` has nothing to send again.
	if out := s.outpost("usage", "retry"); !strings.Contains(out, "No usage records are set aside") {
		t.Errorf("outpost usage retry with nothing set aside: %q", out)
	}
}
