package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/vectorstore"
)

// featureStoreStatus polls `outpost get fs -o json` until the store has the
// phase, and returns its status.
func (s *site) waitFeatureStore(name, phase string, timeout time.Duration) map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var list struct {
			Items []struct {
				Metadata struct{ Name string } `json:"metadata"`
				Status   map[string]any        `json:"status"`
			} `json:"items"`
		}
		out := s.outpost("get", "featurestores", "-o", "json")
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			s.t.Fatalf("outpost get featurestores -o json: %v\n%s", err, out)
		}
		for _, it := range list.Items {
			if it.Metadata.Name == name && it.Status["phase"] == phase {
				return it.Status
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("feature store %s not %s after %s: %s\nlog:\n%s", name, phase, timeout, out, s.log())
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func TestFeatureStoreIngestQueryAndPlainSQLOnASingleHost(t *testing.T) {
	s := newSite(t)
	s.start()
	s.writeManifest("products.yaml", `apiVersion: outpost.dev/v1alpha1
kind: FeatureStore
metadata:
  name: products
spec:
  instance: {name: example}
  database: features
  dimensions: 3
  distance: cosine
  index: {type: hnsw, hnsw: {m: 8, efConstruction: 32}}
  features:
  - {name: category, type: text}
  - {name: price, type: double}
`)
	status := s.waitFeatureStore("products", "Ready", 2*time.Minute)
	pgvector := harness.PgvectorVersion(t)
	if status["pgvectorVersion"] != pgvector || status["table"] != "public.products" {
		t.Errorf("status %v: want pgvectorVersion %s and table public.products", status, pgvector)
	}
	// HNSW builds are parallel only where pgvector has the CVE-2026-3172 fix.
	build, reason := "serial", "SerialHNSWBuild"
	if vectorstore.ParallelHNSWBuildSafe(pgvector) {
		build, reason = "parallel", "ParallelHNSWBuild"
	}
	conds, _ := json.Marshal(status["conditions"])
	if !strings.Contains(string(conds), reason) {
		t.Errorf("conditions %s: want IndexReady with reason %s on pgvector %s", conds, reason, pgvector)
	}

	dir := harnessDir(t)
	recent := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	older := time.Now().Add(-3 * time.Hour).UTC().Format(time.RFC3339)
	var csv strings.Builder
	csv.WriteString("key,embedding,event_time,category,price\n")
	for i := 0; i < 100; i++ {
		cat := "common"
		if i%25 == 0 {
			cat = "rare"
		}
		fmt.Fprintf(&csv, "p%03d,\"[%d,1,%d]\",%s,%s,%d.5\n", i, i, 100-i, older, cat, i)
	}
	file := filepath.Join(dir, "products.csv")
	os.WriteFile(file, []byte(csv.String()), 0o644)
	out := s.outpost("featurestore", "ingest", "products", "--file", file)
	if !strings.Contains(out, "ingested 100 rows") {
		t.Errorf("ingest printed %q", out)
	}
	// Progress is for terminals: none in captured output.
	if strings.Contains(out, "loading") {
		t.Errorf("ingest printed progress when not on a terminal: %q", out)
	}
	update := filepath.Join(dir, "update.jsonl")
	os.WriteFile(update, []byte(`{"key":"p000","embedding":[0,1,0],"event_time":"`+recent+`","category":"changed","price":1}`+"\n"), 0o644)
	s.outpost("featurestore", "ingest", "products", "--file", update)

	out = s.outpost("featurestore", "query", "products", "--vector", "[1,1,99]", "-k", "3", "--where", "category = rare", "-o", "json")
	var found struct {
		Path    string `json:"path"`
		Results []struct {
			Key      string         `json:"key"`
			Features map[string]any `json:"features"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &found); err != nil {
		t.Fatalf("query -o json: %v\n%s", err, out)
	}
	res := found.Results
	if len(res) != 3 || found.Path == "" {
		t.Fatalf("filtered query returned %d rows by path %q, want 3 and the path named: %s", len(res), found.Path, out)
	}
	for _, r := range res {
		if r.Features["category"] != "rare" {
			t.Errorf("filtered query returned %s with category %v", r.Key, r.Features["category"])
		}
	}
	// The path is what answered: asked for an exact search, it says so.
	out = s.outpost("featurestore", "query", "products", "--vector", "[1,1,99]", "-k", "3", "--where", "category = rare", "--exact", "-o", "json")
	if err := json.Unmarshal([]byte(out), &found); err != nil || found.Path != "exact" || len(found.Results) != 3 {
		t.Errorf("query --exact -o json: %v, path %q, %d rows; want path exact and 3 rows:\n%s", err, found.Path, len(found.Results), out)
	}
	// p000 was rare, and is "changed" now; as of two hours ago it was rare.
	asOf := time.Now().Add(-2 * time.Hour).UTC().Format(time.RFC3339)
	out = s.outpost("featurestore", "query", "products", "--vector", "[0,1,100]", "-k", "1", "--as-of", asOf, "-o", "json")
	if !strings.Contains(out, `"p000"`) || !strings.Contains(out, `"rare"`) {
		t.Errorf("as-of query: %s, want p000 as rare", out)
	}

	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte("key,embedding\nq1,\"[1,2,3]\"\nq2,\"[1,2]\"\n"), 0o644)
	if out, err := s.tryOutpost("featurestore", "ingest", "products", "--file", bad); err == nil || !strings.Contains(out, "bad.csv: row 2 (line 3), field embedding") {
		t.Errorf("bad ingest: %v\n%s\nwant an error naming bad.csv row 2 field embedding", err, out)
	}

	out = s.outpost("featurestore", "stats", "products")
	for _, want := range []string{"100 (history: 101 versions)", "hnsw, valid", pgvector + ", HNSW builds " + build} {
		if !strings.Contains(out, want) {
			t.Errorf("stats missing %q:\n%s", want, out)
		}
	}
	// Plain SQL, as the application role through psql.
	got := s.psqlDB("example", "features", "SELECT key FROM products ORDER BY embedding <=> '[0,1,0]' LIMIT 1")
	if got != "p000" {
		t.Errorf("plain SQL nearest to [0,1,0] = %q, want p000", got)
	}
	// The README's filtered and as-of SQL, as a psql user runs it.
	got = s.psqlDB("example", "features", `SET hnsw.iterative_scan = relaxed_order;
WITH r AS MATERIALIZED (
  SELECT key, embedding <=> '[1,1,99]' AS distance FROM products
  WHERE category = 'rare' ORDER BY distance LIMIT 3)
SELECT string_agg(key, ',' ORDER BY distance) FROM r`)
	// psql prints SET's command tag first.
	if got != "SET\np025,p050,p075" {
		t.Errorf("README's filtered SQL: %q, want p025,p050,p075 (the rare products nearest [1,1,99])", got)
	}
	got = s.psqlDB("example", "features", "SELECT DISTINCT ON (key) key, category FROM products_history WHERE key = 'p000' AND event_time <= '"+asOf+"' ORDER BY key, event_time DESC")
	if got != "p000|rare" {
		t.Errorf("README's as-of SQL: %q, want p000|rare", got)
	}

	// Deleting a store: Retain (the default) keeps its tables, Delete
	// drops them.
	s.writeManifest("scratch.yaml", `apiVersion: outpost.dev/v1alpha1
kind: FeatureStore
metadata:
  name: scratch
spec:
  instance: {name: example}
  database: features
  dimensions: 3
  deletionPolicy: Delete
`)
	s.waitFeatureStore("scratch", "Ready", 2*time.Minute)
	one := filepath.Join(dir, "one.csv")
	os.WriteFile(one, []byte("key,embedding\nx,\"[1,2,3]\"\n"), 0o644)
	s.outpost("featurestore", "ingest", "scratch", "--file", one)
	s.outpost("delete", "fs/products")
	s.outpost("delete", "fs/scratch")
	s.waitFeatureStoreGone("products", time.Minute)
	s.waitFeatureStoreGone("scratch", time.Minute)
	got = s.psqlDB("example", "features", "SELECT (SELECT count(*) FROM products) || ' ' || (SELECT count(*) FROM products_history) || ' ' || (to_regclass('scratch') IS NULL AND to_regclass('scratch_past') IS NULL AND to_regclass('scratch_history') IS NULL)")
	if got != "100 101 true" {
		t.Errorf("after deleting products (Retain) and scratch (Delete): %q, want products' 100 rows and 101 versions kept, scratch's tables gone (100 101 true)", got)
	}
}

// waitFeatureStoreGone polls `outpost get featurestores` until it no
// longer lists the store.
func (s *site) waitFeatureStoreGone(name string, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var list struct {
			Items []struct {
				Metadata struct{ Name string } `json:"metadata"`
			} `json:"items"`
		}
		out := s.outpost("get", "featurestores", "-o", "json")
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			s.t.Fatalf("outpost get featurestores -o json: %v\n%s", err, out)
		}
		listed := false
		for _, it := range list.Items {
			listed = listed || it.Metadata.Name == name
		}
		if !listed {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("feature store %s still listed %s after delete: %s\nlog:\n%s", name, timeout, out, s.log())
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func harnessDir(t *testing.T) string { return harness.TempDir(t) }

// psqlDB runs SQL through psql as an instance's application role in the
// named database, and returns the rows unaligned.
func (s *site) psqlDB(name, database, sql string) string {
	s.t.Helper()
	dir := filepath.Join(s.stateDir, "instances", "default", name)
	var creds struct {
		Host     string `json:"host"`
		Port     int    `json:"port"`
		Username string `json:"username"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "credentials.json"))
	if err != nil {
		s.t.Fatal(err)
	}
	if err := json.Unmarshal(b, &creds); err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.SystemBinary(s.t, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-h", creds.Host, "-p", strconv.Itoa(creds.Port), "-U", creds.Username, "-d", database, "-c", sql)
	cmd.Env = append(os.Environ(), "PGPASSFILE="+filepath.Join(dir, "pgpass"), "PGCONNECT_TIMEOUT=5")
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.t.Fatalf("psql %q in %s: %v\n%s", sql, database, err, out)
	}
	return strings.TrimSpace(string(out))
}
