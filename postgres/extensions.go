package postgres

import (
	"fmt"
	"slices"
	"strings"
)

// AllowedExtensions are the extensions Outpost creates on request. Anything
// else could load arbitrary code into the server (an untrusted procedural
// language, a foreign-data wrapper reading the host's files), so the list is
// an allowlist. Keep it identical to the Enum on the Extension type in
// controller/api/v1alpha1/postgresinstance_types.go (a test compares them).
var AllowedExtensions = []string{"vector", "pg_stat_statements", "pgcrypto", "pg_trgm", "btree_gin", "btree_gist", "uuid-ossp", "hstore", "citext"}

// CheckExtensions returns an error naming the first extension that is not on
// the allowlist, and listing what is.
func CheckExtensions(names []string) error {
	for _, name := range names {
		if !slices.Contains(AllowedExtensions, name) {
			return fmt.Errorf("extension %q is not on the allowlist (%s)", name, strings.Join(AllowedExtensions, ", "))
		}
	}
	return nil
}
