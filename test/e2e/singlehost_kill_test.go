package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/outpostdata/outpost/controller/controldb"
	"github.com/outpostdata/outpost/controller/singlehost"
	"github.com/outpostdata/outpost/usageexport"
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
// (nothing doubled, nothing invented). The month's export, written by the
// binary and read back from its file, verifies and holds exactly the
// declared history cut at every clock hour up to the last closed one: per
// instance and hour slice, the declared CPU limit times the seconds
// declared in it, and every instance declared in those hours listed.
// `outpost up` has no fake clock and an export holds only closed hours, so
// the moments of the history (creation, last sighting, the restart that
// read a change) come from the ledger once checked against the windows the
// kills allow. This run's hours are in the export only when the run
// crossed a clock hour (the test logs how many records it compared);
// otherwise the export is only shown to invent nothing before the run.
func TestKilledOutpostUpBillsWhatWasDeclared(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	s := newSite(t)
	testStart := time.Now()
	s.start()
	goneWritten := time.Now()
	s.writeManifest("gone.yaml", goodInstance("gone"))
	s.waitPhase("gone", "Running", 3*time.Minute)
	goneRunning := time.Now()

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

	// The declared history, with each moment taken from the ledger once
	// checked above against when it could have happened: what every
	// instance is billed for, interval by interval.
	type span struct {
		start       time.Time
		end         *time.Time
		milliVCores int64
	}
	declared := map[string][]span{
		"example": {{example[0].start, &example[1].start, 1000}, {example[1].start, nil, 2000}},
		"gone":    {{gone[0].createdAt, last.deletedAt, 1000}},
		"added":   {{added[0].createdAt, nil, 1000}},
	}
	within("example created", example[0].createdAt, testStart, goneRunning)
	within("gone created", gone[0].createdAt, goneWritten, goneRunning)
	for name, want := range declared {
		ivs := byName[name]
		ok := len(ivs) == len(want)
		for j := 0; ok && j < len(ivs); j++ {
			ok = ivs[j].start.Equal(want[j].start) && ivs[j].milliVCores == want[j].milliVCores &&
				(ivs[j].end == nil) == (want[j].end == nil) && (ivs[j].end == nil || ivs[j].end.Equal(*want[j].end))
		}
		if !ok {
			t.Errorf("%s: the ledger holds %+v, the declared history says %+v", name, ivs, want)
		}
	}

	// The month's export, written by the real binary, verifies, and its
	// records are the declared history cut at every clock hour up to the
	// hour it covers, each at the declared CPU limit for its seconds:
	// nothing missing, nothing doubled, nothing invented.
	month := time.Now().UTC().Format("2006-01")
	file := filepath.Join(t.TempDir(), "usage.outpost-usage")
	exportFrom := time.Now()
	s.outpost("usage", "export", "--month", month, "-o", file)
	exportTo := time.Now()
	pub, _ := s.outpostSplit("usage", "key")
	if out, err := exec.Command(outpostBin, "usage", "verify", file, "--public-key", pub).CombinedOutput(); err != nil {
		t.Errorf("the export after ten kills does not verify: %v\n%s", err, out)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	key, err := usageexport.ParsePublicKey(strings.TrimSpace(pub))
	if err != nil {
		t.Fatal(err)
	}
	v, err := usageexport.Verify(data, usageexport.VerifyOptions{PublicKey: key})
	if err != nil {
		t.Fatalf("the export does not verify: %v", err)
	}
	period := v.Payload.Period
	covered := period.CoveredUntil
	if !covered.Equal(exportFrom.UTC().Truncate(time.Hour)) && !covered.Equal(exportTo.UTC().Truncate(time.Hour)) {
		t.Errorf("the export of %s covers up to %s, exported between %s and %s: want the last closed hour",
			month, covered, exportFrom.UTC().Format(time.RFC3339), exportTo.UTC().Format(time.RFC3339))
	}
	var want, got []string
	wantInstances := map[string]ledgerInterval{}
	for name, spans := range declared {
		for _, sp := range spans {
			from, to := sp.start, covered
			if from.Before(period.Start) {
				from = period.Start
			}
			if sp.end != nil && sp.end.Before(to) {
				to = *sp.end
			}
			for at := from; at.Before(to); {
				next := at.Truncate(time.Hour).Add(time.Hour)
				if next.After(to) {
					next = to
				}
				want = append(want, fmt.Sprintf("%s %s-%s %d milli-vCores %d milli-vCore-seconds", name,
					at.UTC().Format(time.RFC3339), next.UTC().Format(time.RFC3339), sp.milliVCores, sp.milliVCores*int64(next.Sub(at)/time.Second)))
				at = next
			}
		}
		first, end := byName[name][0], spans[len(spans)-1].end
		if first.createdAt.Before(covered) && (end == nil || end.After(period.Start)) {
			wantInstances[name] = ledgerInterval{createdAt: first.createdAt, deletedAt: end}
		}
	}
	nameOf := map[string]string{}
	for _, inst := range v.Payload.Instances {
		nameOf[inst.UID] = inst.Name
		w, ok := wantInstances[inst.Name]
		if !ok {
			t.Errorf("the export lists %s, which was not declared in the hours it covers", inst.Name)
			continue
		}
		delete(wantInstances, inst.Name)
		if !inst.CreatedAt.Equal(w.createdAt) || (inst.DeletedAt == nil) != (w.deletedAt == nil) || (w.deletedAt != nil && !inst.DeletedAt.Equal(*w.deletedAt)) {
			t.Errorf("the export lists %s created %s, deleted %v; declared from %s to %v", inst.Name, inst.CreatedAt, inst.DeletedAt, w.createdAt, w.deletedAt)
		}
	}
	for name := range wantInstances {
		t.Errorf("the export does not list %s, declared in the hours it covers", name)
	}
	for _, r := range v.Payload.Records {
		got = append(got, fmt.Sprintf("%s %s-%s %d milli-vCores %d milli-vCore-seconds", nameOf[r.UID],
			r.Start.UTC().Format(time.RFC3339), r.End.UTC().Format(time.RFC3339), r.MilliVCores, r.MilliVCoreSeconds))
	}
	sort.Strings(want)
	sort.Strings(got)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the export of %s (covering up to %s) holds:\n%s\nthe declared history says:\n%s",
			month, covered.Format(time.RFC3339), strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	t.Logf("the export of %s covers up to %s: %d records of this run's instances compared\n%s", month, covered.Format(time.RFC3339), len(got), strings.Join(got, "\n"))
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
