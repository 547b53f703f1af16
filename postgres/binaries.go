package postgres

import (
	"fmt"
	"os"
	"path/filepath"
)

// DefaultMajorVersion is the PostgreSQL major version Outpost installs.
const DefaultMajorVersion = 15

// BinDir returns the directory of the server binaries (initdb, postgres) for a
// major version, as Debian's packages lay them out, or an error that says how
// to install them.
func BinDir(major int) (string, error) {
	dir := fmt.Sprintf("/usr/lib/postgresql/%d/bin", major)
	for _, name := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("PostgreSQL %d server binary %s not found in %s: run `make deps` (or install postgresql-%d)", major, name, dir, major)
		}
	}
	return dir, nil
}
