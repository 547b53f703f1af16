package postgres

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/blang/semver/v4"
)

// ParallelBuildSafePgvector is the first pgvector version whose parallel
// HNSW builds do not overflow a buffer (CVE-2026-3172, 0.6.0 to 0.8.1).
var ParallelBuildSafePgvector = semver.MustParse("0.8.2")

// serialBuildGuard is what the managed settings file holds while the
// installed pgvector is older than ParallelBuildSafePgvector: no index of
// the instance is built with parallel workers. Outpost's own builds are
// serial on such versions anyway, but a user's own CREATE INDEX ... USING
// hnsw is not Outpost's to set per session, so the guard is instance-wide.
var serialBuildGuard = map[string]string{"max_parallel_maintenance_workers": "0"}

var controlVersion = regexp.MustCompile(`(?m)^default_version\s*=\s*'([^']*)'`)

// InstalledPgvector returns the pgvector version installed for the
// PostgreSQL whose binaries are in binDir (the default_version of its
// vector.control), or "" when pgvector is not installed.
func InstalledPgvector(binDir string) (string, error) {
	out, err := exec.Command(filepath.Join(binDir, "pg_config"), "--sharedir").Output()
	if err != nil {
		return "", fmt.Errorf("pg_config --sharedir in %s: %w", binDir, err)
	}
	file := filepath.Join(strings.TrimSpace(string(out)), "extension", "vector.control")
	b, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("installed pgvector: %w", err)
	}
	m := controlVersion.FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("installed pgvector: no default_version in %s", file)
	}
	return string(m[1]), nil
}

// PgvectorBuildsInParallelSafely reports whether version may build HNSW
// indexes with parallel workers; an unparseable version may not.
func PgvectorBuildsInParallelSafely(version string) bool {
	v, err := semver.ParseTolerant(version)
	return err == nil && v.GTE(ParallelBuildSafePgvector)
}

// pgvectorGuard returns the settings the installed pgvector needs: the
// serial build guard while it is older than 0.8.2, none otherwise (and none
// without pgvector).
func (s *Server) pgvectorGuard() (map[string]string, error) {
	dir, err := s.binDir()
	if err != nil {
		return nil, err
	}
	v, err := InstalledPgvector(dir)
	if err != nil || v == "" || PgvectorBuildsInParallelSafely(v) {
		return nil, err
	}
	return serialBuildGuard, nil
}
