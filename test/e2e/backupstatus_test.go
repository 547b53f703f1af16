package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/outpostdata/outpost/test/harness"
)

// getLine is the line of `outpost get instances` for name, split into
// columns.
func (s *site) getLine(name string) map[string]string {
	s.t.Helper()
	lines := strings.Split(strings.TrimSpace(s.outpost("get", "instances")), "\n")
	header := strings.Fields(lines[0])
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) >= len(header) && f[1] == name {
			cols := map[string]string{}
			for i, h := range header {
				cols[h] = f[i]
			}
			return cols
		}
	}
	return nil
}

func TestArchivingAndScheduledVerificationShowInGetAndDescribe(t *testing.T) {
	m := harness.StartMinIO(t)
	s := newSite(t)
	s.start()
	s.writeObjectStore(m, "status-backups", true)
	s.writeManifest("vfy.yaml", goodInstance("vfy")+`  backup:
    objectStore: {name: minio}
    schedule: "@every 15s"
    retention: {count: 2}
    verification: {schedule: "@every 30s"}
`)
	s.waitPhase("vfy", "Running", 2*time.Minute)
	s.psql("vfy", "CREATE TABLE items AS SELECT generate_series(1, 3000) AS id")

	start := time.Now()
	waitFor(t, 4*time.Minute, "outpost get showing WALArchiving Archiving and BackupVerified Passed", func() bool {
		cols := s.getLine("vfy")
		if cols["VERIFIED"] == "Failed" {
			// Before the first scheduled backup completes there is
			// nothing to verify, and that is a failure too.
			lv, _ := s.statusOf("pgi", "vfy")["lastVerification"].(map[string]any)
			if !strings.Contains(fmt.Sprint(lv["message"]), "no completed backup") {
				t.Fatalf("verification failed: %v\n%s", lv, s.outpost("describe", "pgi/vfy"))
			}
		}
		return cols["ARCHIVING"] == "Archiving" && cols["VERIFIED"] == "Passed"
	})
	t.Logf("first passed verification visible after %s", time.Since(start).Round(time.Second))
	lv, _ := s.statusOf("pgi", "vfy")["lastVerification"].(map[string]any)
	if lv["result"] != "Passed" || lv["backup"] == "" || lv["recoveredTo"] == nil || lv["restored"] != true {
		t.Fatalf("status.lastVerification: %v", lv)
	}
	desc := s.outpost("describe", "pgi/vfy")
	for _, want := range []string{"WALArchiving", "BackupVerified", "Last verification:  Passed", "amcheck"} {
		if !strings.Contains(desc, want) {
			t.Fatalf("outpost describe pgi/vfy lacks %q:\n%s", want, desc)
		}
	}

	// The object store goes away: archiving turns red in get and describe,
	// naming the segment that waits.
	m.Stop()
	// The application role cannot switch WAL; 25 MB of rows finish the
	// current segment.
	seg := strings.TrimSpace(s.psql("vfy", "SELECT pg_walfile_name(pg_current_wal_lsn())"))
	s.psql("vfy", "CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 100000) g")
	start = time.Now()
	waitFor(t, 2*time.Minute, "outpost get showing ArchiveFailing", func() bool {
		return s.getLine("vfy")["ARCHIVING"] == "ArchiveFailing"
	})
	t.Logf("ArchiveFailing visible %s after the store stopped", time.Since(start).Round(time.Second))
	// The failing segment is the one the filler finished or, when
	// archive_timeout switched WAL meanwhile, a later one.
	desc = s.outpost("describe", "pgi/vfy")
	named := failingSegment.FindStringSubmatch(desc)
	if named == nil || named[1] < seg {
		t.Fatalf("describe does not name a failing segment at or after %s:\n%s", seg, desc)
	}
	m.Start(t)
	waitFor(t, 3*time.Minute, "archiving recovering by itself", func() bool {
		return s.getLine("vfy")["ARCHIVING"] == "Archiving"
	})
	if desc := s.outpost("describe", "pgi/vfy"); !strings.Contains(desc, "ArchivingRecovered") {
		t.Fatalf("no ArchivingRecovered event:\n%s", desc)
	}
}

// failingSegment finds the segment WALArchiving names as failing.
var failingSegment = regexp.MustCompile(`archiving WAL segment ([0-9A-F]{24}[.0-9A-Za-z]*) failed`)
