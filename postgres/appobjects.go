package postgres

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// AppObjects are what an instance's application needs inside its server:
// a login role, the databases it owns and the extensions in each of them.
type AppObjects struct {
	// Owner is the application role and Password its password.
	Owner, Password string
	// Databases are owned by Owner; the first is the application database.
	// A name given twice is ensured once.
	Databases []string
	// Extensions are created, or updated to the installed package's
	// version, in every one of Databases.
	Extensions []string
}

// EnsureAppObjects puts the application role, its databases and their
// extensions in place, connecting as the superuser (URL). The single-host
// runtime and the in-pod instance manager both call it, so both put the
// same things in place. Every step is idempotent (see sql.go): it can run
// on every change of the spec. It returns the pgvector version created in
// the databases, or "" when vector is not among the extensions.
func (s *Server) EnsureAppObjects(ctx context.Context, want AppObjects) (pgvector string, err error) {
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := EnsureRole(ctx, conn, want.Owner, want.Password); err != nil {
		return "", err
	}
	var done []string
	for _, db := range want.Databases {
		if slices.Contains(done, db) {
			continue
		}
		done = append(done, db)
		if err := EnsureDatabase(ctx, conn, db, want.Owner); err != nil {
			return "", err
		}
		v, err := s.ensureExtensions(ctx, db, want.Extensions)
		if err != nil {
			return "", err
		}
		if v != "" {
			pgvector = v
		}
	}
	return pgvector, nil
}

// ensureExtensions creates or updates exts in one database, and returns the
// version of vector there ("" when exts does not name it).
func (s *Server) ensureExtensions(ctx context.Context, db string, exts []string) (pgvector string, err error) {
	if len(exts) == 0 {
		return "", nil
	}
	conn, err := pgx.Connect(ctx, s.URL(db))
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, e := range exts {
		if err := EnsureExtension(ctx, conn, e); err != nil {
			return "", fmt.Errorf("database %s: %w", db, err)
		}
		if e == "vector" {
			if pgvector, err = ExtensionVersion(ctx, conn, "vector"); err != nil {
				return "", err
			}
		}
	}
	return pgvector, nil
}
