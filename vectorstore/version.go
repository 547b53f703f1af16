package vectorstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// PgvectorVersion returns the version of the vector extension in the
// database of q, or "" when it is not created there.
func PgvectorVersion(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (string, error) {
	var v string
	err := q.QueryRow(ctx, "SELECT extversion FROM pg_extension WHERE extname = 'vector'").Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("pgvector version: %w", err)
	}
	return v, nil
}

// ParallelHNSWBuildSafe reports whether a pgvector version may build HNSW
// indexes with parallel workers. Versions 0.6.0 to 0.8.1 overflow a buffer
// in parallel builds (CVE-2026-3172, fixed in 0.8.2); an unparseable
// version is treated as unsafe.
func ParallelHNSWBuildSafe(version string) bool {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return false
	}
	var n [3]int
	for i, p := range parts {
		// Tolerate suffixes such as "0.8.2-dev".
		p, _, _ = strings.Cut(p, "-")
		v, err := strconv.Atoi(p)
		if err != nil {
			return false
		}
		n[i] = v
	}
	switch {
	case n[0] != 0:
		return n[0] > 0
	case n[1] != 8:
		return n[1] > 8
	default:
		return n[2] >= 2
	}
}
