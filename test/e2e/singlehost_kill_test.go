package e2e

import (
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpostdata/outpost/controller/controldb"
	"github.com/outpostdata/outpost/controller/singlehost"
)

// ledgerInterval is one row of usage_intervals, with its instance's name.
type ledgerInterval struct {
	name        string
	start       time.Time
	end         *time.Time
	milliVCores int64
	createdAt   time.Time
	deletedAt   *time.Time
}

// ledgerIntervals reads the usage ledger of a running `outpost up` from
// controldb, ordered by instance name and start.
func (s *site) ledgerIntervals() []ledgerInterval {
	s.t.Helper()
	ctx := context.Background()
	db, err := controldb.ConnectLocal(ctx, singlehost.StateDir{Root: s.stateDir}.ControlDB())
	if err != nil {
		s.t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Pool.Query(ctx, `SELECT i.name, v.start_at, v.end_at, v.milli_vcores, i.created_at, i.deleted_at
		FROM usage_intervals v JOIN usage_instances i USING (uid) ORDER BY i.name, v.start_at`)
	if err != nil {
		s.t.Fatal(err)
	}
	defer rows.Close()
	var out []ledgerInterval
	for rows.Next() {
		var iv ledgerInterval
		if err := rows.Scan(&iv.name, &iv.start, &iv.end, &iv.milliVCores, &iv.createdAt, &iv.deletedAt); err != nil {
			s.t.Fatal(err)
		}
		out = append(out, iv)
	}
	if err := rows.Err(); err != nil {
		s.t.Fatal(err)
	}
	return out
}

// TestKilledOutpostUpBillsWhatWasDeclared kills the real `outpost up` with
// SIGKILL ten times at random moments. While it is dead, one instance's
// manifest is deleted, one is added and one's CPU limit is changed. The
// ledger must then say exactly what the declared history and the billing
// policy say (README, "How usage is billed"): every instance's intervals
// follow each other without gap or overlap from its creation; the deleted
// instance is closed at its last sighting, inside the run that was killed
// before its manifest went; the new one starts when the restarted
// controller first read it; the CPU change takes effect then too; and
// every record lies inside one interval at that interval's CPU limit
// (nothing doubled, nothing invented); and the month's export verifies.
// `outpost up` has no fake clock, so the history is checked on the ledger's
// intervals to the second, and the export holds only the hours that closed
// during the run (often none).
func TestKilledOutpostUpBillsWhatWasDeclared(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	s := newSite(t)
	s.start()
	s.writeManifest("gone.yaml", goodInstance("gone"))
	s.waitPhase("gone", "Running", 3*time.Minute)

	var goneRunStart, goneKilled, addKilled, addRestarted, cpuKilled, cpuRestarted time.Time
	runStart := time.Now()
	for i := 0; i < 10; i++ {
		time.Sleep(time.Duration(rng.Int64N(int64(3 * time.Second))))
		killed := time.Now()
		s.crash()
		switch i {
		case 3:
			goneRunStart, goneKilled = runStart, killed
			if err := os.Remove(filepath.Join(s.stateDir, "manifests", "gone.yaml")); err != nil {
				t.Fatal(err)
			}
		case 5:
			addKilled = killed
			s.writeManifest("added.yaml", goodInstance("added"))
		case 7:
			cpuKilled = killed
			path := filepath.Join(s.stateDir, "manifests", "example.yaml")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			changed := strings.Replace(string(b), `cpu: "1"`, `cpu: "2"`, 1)
			if changed == string(b) {
				t.Fatalf("example.yaml has no cpu: \"1\" to change:\n%s", b)
			}
			s.writeManifest("example.yaml", changed)
		}
		time.Sleep(time.Duration(rng.Int64N(int64(2 * time.Second))))
		runStart = time.Now()
		s.start()
		switch i {
		case 5:
			addRestarted = time.Now()
		case 7:
			cpuRestarted = time.Now()
		}
	}
	s.waitPhase("added", "Running", 3*time.Minute)

	byName := map[string][]ledgerInterval{}
	for _, iv := range s.ledgerIntervals() {
		byName[iv.name] = append(byName[iv.name], iv)
	}
	if len(byName) != 3 {
		t.Fatalf("the ledger holds instances %v, want example, gone and added", keys(byName))
	}
	// No gap, no overlap, one open interval at most, from creation on.
	for name, ivs := range byName {
		if !ivs[0].start.Equal(ivs[0].createdAt) {
			t.Errorf("%s: first interval starts at %s, created at %s", name, ivs[0].start, ivs[0].createdAt)
		}
		for j := 1; j < len(ivs); j++ {
			if ivs[j-1].end == nil || !ivs[j-1].end.Equal(ivs[j].start) {
				t.Errorf("%s: interval %d ends at %v, the next starts at %s: a gap or an overlap", name, j-1, ivs[j-1].end, ivs[j].start)
			}
		}
	}
	within := func(what string, at, from, to time.Time) {
		t.Helper()
		if at.Before(from.Truncate(time.Second)) || at.After(to) {
			t.Errorf("%s at %s, want between %s and %s", what, at.Format(time.RFC3339), from.Format(time.RFC3339), to.Format(time.RFC3339))
		}
	}

	gone := byName["gone"]
	last := gone[len(gone)-1]
	if last.deletedAt == nil || last.end == nil || !last.end.Equal(*last.deletedAt) {
		t.Fatalf("gone, whose manifest was deleted while `outpost up` was dead, is not closed: %+v", last)
	}
	within("gone closed (its last sighting)", *last.deletedAt, goneRunStart, goneKilled)
	for _, iv := range gone {
		if iv.milliVCores != 1000 {
			t.Errorf("gone billed at %d milli-vCores, declared 1000", iv.milliVCores)
		}
	}

	added := byName["added"]
	if len(added) != 1 || added[0].end != nil || added[0].milliVCores != 1000 {
		t.Errorf("added: %+v, want one open interval at 1000 milli-vCores", added)
	}
	within("added created", added[0].createdAt, addKilled, addRestarted)

	example := byName["example"]
	if len(example) != 2 || example[0].milliVCores != 1000 || example[1].milliVCores != 2000 || example[1].end != nil {
		t.Fatalf("example: %+v, want 1000 then (open) 2000 milli-vCores", example)
	}
	within("example's CPU change", example[1].start, cpuKilled, cpuRestarted)

	// Every record lies inside one interval, at its CPU limit.
	ctx := context.Background()
	db, err := controldb.ConnectLocal(ctx, singlehost.StateDir{Root: s.stateDir}.ControlDB())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var stray int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM usage_records r WHERE NOT EXISTS (
			SELECT 1 FROM usage_intervals v WHERE v.uid = r.uid AND v.milli_vcores = r.milli_vcores
			AND r.start_at >= v.start_at AND (v.end_at IS NULL OR r.end_at <= v.end_at))
		OR EXISTS (SELECT 1 FROM usage_records o WHERE o.uid = r.uid AND o.id <> r.id
			AND o.start_at < r.end_at AND r.start_at < o.end_at)`).Scan(&stray); err != nil {
		t.Fatal(err)
	}
	if stray != 0 {
		t.Errorf("%d records lie outside the declared intervals or overlap another", stray)
	}

	// The month's export verifies: its records tile every instance's
	// declared life up to the last closed hour, with no gap or overlap.
	file := filepath.Join(t.TempDir(), "usage.outpost-usage")
	s.outpost("usage", "export", "--month", time.Now().UTC().Format("2006-01"), "-o", file)
	pub, _ := s.outpostSplit("usage", "key")
	if out, err := exec.Command(outpostBin, "usage", "verify", file, "--public-key", pub).CombinedOutput(); err != nil {
		t.Errorf("the export after ten kills does not verify: %v\n%s", err, out)
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
