package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/outpostdata/outpost/test/harness"
)

// Incremental backups as a user makes and manages them with the binary:
// create, list, delete and prune refusing to break a chain, and verify
// --restore rebuilding the newest backup from its chain.
func TestIncrementalBackupsThroughTheCLI(t *testing.T) {
	m := harness.StartMinIO(t)
	s := newSite(t)
	s.start()
	s.writeObjectStore(m, "incremental-backups", true)
	s.writeManifest("src.yaml", goodInstance("src")+`  backup:
    objectStore: {name: minio}
    retention: {count: 1}
`)
	s.waitPhase("src", "Running", 2*time.Minute)
	s.psql("src", "CREATE TABLE items AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g")

	if out, err := s.tryOutpost("backup", "create", "src", "--type", "incremental"); err == nil || !strings.Contains(out, "make a full backup first") {
		t.Fatalf("an incremental backup with no backup to go on top of: %v\n%s", err, out)
	}
	if out, err := s.tryOutpost("backup", "create", "src", "--type", "differential"); err == nil || !strings.Contains(out, `type "differential"`) {
		t.Fatalf("backup create --type differential: %v\n%s", err, out)
	}
	if out := s.outpost("backup", "create", "src"); !strings.HasPrefix(out, "full backup ") {
		t.Fatalf("outpost backup create: %s", out)
	}
	s.psql("src", "UPDATE items SET v = 'monday' WHERE id % 10 = 0")
	if out := s.outpost("backup", "create", "src", "--type", "incremental"); !strings.HasPrefix(out, "incremental backup ") || !strings.Contains(out, " on top of ") {
		t.Fatalf("outpost backup create --type incremental: %s", out)
	}
	s.psql("src", "INSERT INTO items VALUES (0, 'tuesday')")
	s.outpost("backup", "create", "src", "--type", "incremental")

	var list []struct {
		ID       string `json:"id"`
		Manifest struct {
			Type   string `json:"type"`
			Parent string `json:"parent"`
		} `json:"manifest"`
	}
	if err := json.Unmarshal([]byte(s.outpost("backup", "list", "src", "-o", "json")), &list); err != nil || len(list) != 3 {
		t.Fatalf("outpost backup list -o json: %v %+v", err, list)
	}
	full, inc1, inc2 := list[0], list[1], list[2]
	if full.Manifest.Type != "full" || inc1.Manifest.Type != "incremental" || inc1.Manifest.Parent != full.ID || inc2.Manifest.Parent != inc1.ID {
		t.Fatalf("backups: %+v, want a full backup and two incrementals each on top of the one before", list)
	}
	table := s.outpost("backup", "list", "src")
	if !strings.Contains(table, "TYPE") || !strings.Contains(table, "PARENT") || !strings.Contains(table, "incremental  "+inc1.ID) {
		t.Fatalf("outpost backup list does not show type and parent:\n%s", table)
	}

	// Neither delete nor prune breaks the chain.
	if out, err := s.tryOutpost("backup", "delete", "src", full.ID); err == nil || !strings.Contains(out, inc1.ID) {
		t.Fatalf("deleting the full backup under two incrementals: %v\n%s", err, out)
	}
	if out := s.outpost("backup", "prune", "src"); !strings.Contains(out, "deleted 0 backups") || !strings.Contains(out, "kept "+full.ID+", "+inc1.ID+" only because kept incremental backups are on top of them") {
		t.Fatalf("outpost backup prune with retention count 1: %s", out)
	}

	// verify --restore checks every link and rebuilds the newest from them.
	out := s.outpost("backup", "verify", "src", inc2.ID, "--restore")
	if !strings.Contains(out, "its chain, every link checked: "+full.ID+" <- "+inc1.ID+" <- "+inc2.ID) || !strings.Contains(out, "pass amcheck") || !strings.Contains(out, "20001 rows") {
		t.Fatalf("outpost backup verify --restore of incremental %s: %s", inc2.ID, out)
	}
}
