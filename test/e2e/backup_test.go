package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpostdata/outpost/test/harness"
)

// backupPhase is what `outpost get backups -o json` says of one Backup.
func (s *site) backupStatus(name string) map[string]any {
	s.t.Helper()
	var list struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Status map[string]any `json:"status"`
		} `json:"items"`
	}
	out := s.outpost("get", "backups", "-o", "json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		s.t.Fatalf("outpost get backups -o json: %v\n%s", err, out)
	}
	for _, b := range list.Items {
		if b.Metadata.Name == name {
			return b.Status
		}
	}
	return nil
}

func TestBackupResourceCLIAndRestoreThroughTheBinary(t *testing.T) {
	m := harness.StartMinIO(t)
	s := newSite(t)
	creds := filepath.Join(harness.TempDir(t), "minio.credentials")
	os.WriteFile(creds, []byte("accessKeyID="+m.AccessKey+"\nsecretAccessKey="+m.SecretKey+"\n"), 0o600)
	s.start()
	s.writeManifest("store.yaml", `apiVersion: outpost.dev/v1alpha1
kind: ObjectStore
metadata:
  name: minio
spec:
  endpoint: `+m.URL()+`
  bucket: site-backups
  createBucket: true
  credentials:
    file: `+creds+`
`)
	s.writeManifest("src.yaml", goodInstance("src")+`  backup:
    objectStore: {name: minio}
    retention: {count: 2}
`)
	s.waitPhase("src", "Running", 2*time.Minute)
	s.psql("src", "CREATE TABLE items AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g")

	// A Backup resource runs in the controller and reports its status.
	s.writeManifest("b1.yaml", `apiVersion: outpost.dev/v1alpha1
kind: Backup
metadata:
  name: b1
spec:
  instance: {name: src}
`)
	began := time.Now()
	waitFor(t, 2*time.Minute, "Backup b1 completing", func() bool {
		st := s.backupStatus("b1")
		if st["phase"] == "Failed" {
			t.Fatalf("backup b1 failed: %v\n%s", st["error"], s.log())
		}
		if st["phase"] == "Completed" {
			return true
		}
		if time.Since(began) > 100*time.Second {
			t.Fatalf("Backup b1 status %v\nget:\n%s\nlog:\n%s", st, s.outpost("get", "all"), s.log())
		}
		return false
	})
	st := s.backupStatus("b1")
	for _, f := range []string{"backupID", "startLSN", "stopLSN", "location", "startedAt", "stoppedAt"} {
		if st[f] == nil || st[f] == "" {
			t.Errorf("Backup b1 status lacks %s: %v", f, st)
		}
	}

	// The CLI makes another, lists and verifies it.
	s.psql("src", "INSERT INTO items VALUES (0, 'after the first backup')")
	out := s.outpost("backup", "create", "src")
	if !strings.Contains(out, "completed") {
		t.Fatalf("outpost backup create: %s", out)
	}
	var list []struct {
		ID        string `json:"id"`
		Completed bool   `json:"completed"`
	}
	if err := json.Unmarshal([]byte(s.outpost("backup", "list", "src", "-o", "json")), &list); err != nil || len(list) != 2 {
		t.Fatalf("outpost backup list: %v %+v", err, list)
	}
	if out := s.outpost("backup", "verify", "src", list[1].ID, "--restore"); !strings.Contains(out, "every checksum matches") || !strings.Contains(out, "pass amcheck") || !strings.Contains(out, "20001 rows") {
		t.Fatalf("outpost backup verify --restore: %s", out)
	}

	// A target time before the first backup is refused, naming the earliest.
	if out, err := s.tryOutpost("backup", "restore", "src", "--to", "early", "--target-time", "2001-01-01T00:00:00Z"); err == nil || !strings.Contains(out, "earliest time a restore can target is") {
		t.Fatalf("restore before the first backup: %v\n%s", err, out)
	}

	// Restore to the end of WAL through the CLI: a new instance.
	s.outpost("backup", "restore", "src", "--to", "copy")
	s.waitPhase("copy", "Running", 3*time.Minute)
	if got, want := s.psql("copy", "SELECT count(*) FROM items"), s.psql("src", "SELECT count(*) FROM items"); got != want || got != "20001" {
		t.Fatalf("restored copy has %s rows, source %s, want 20001", got, want)
	}
}
