package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/outpostdata/outpost/postgres"
)

var defaultVersion = regexp.MustCompile(`(?m)^default_version = '([^']+)'`)

// PgvectorVersion is the pgvector version scripts/install-deps.sh
// installed, read from its control file, which is what CREATE EXTENSION
// vector creates. Tests compare what Outpost reports with it.
func PgvectorVersion(tb testing.TB) string {
	tb.Helper()
	bin, err := postgres.BinDir(postgres.DefaultMajorVersion)
	if err != nil {
		tb.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(bin, "pg_config"), "--sharedir").Output()
	if err != nil {
		tb.Fatalf("pg_config --sharedir: %v", err)
	}
	control := filepath.Join(strings.TrimSpace(string(out)), "extension", "vector.control")
	b, err := os.ReadFile(control)
	if err != nil {
		tb.Fatalf("pgvector is not installed (%v): run `make deps`", err)
	}
	m := defaultVersion.FindSubmatch(b)
	if m == nil {
		tb.Fatalf("%s has no default_version", control)
	}
	return string(m[1])
}
