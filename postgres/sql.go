package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The functions in this file make roles, databases and extensions exist as
// asked. conn must be a superuser connection (Server.URL). Each is
// idempotent and writes nothing when things are already right, so a
// controller can call them on every reconcile; each survives losing a race
// with a concurrent caller doing the same. Identifiers are quoted with
// pgx.Identifier, never pasted.

// EnsureRole makes name a LOGIN role whose password is password, creating
// the role or updating its password and LOGIN attribute as needed. The
// password is stored as a SCRAM-SHA-256 verifier; for ASCII passwords (all
// the ones Outpost generates) the verifier is computed here, so the password
// itself is never sent to the server, where a failing statement would log
// it.
func EnsureRole(ctx context.Context, conn *pgx.Conn, name, password string) error {
	if name == "" {
		return errors.New("ensure role: the role name is empty")
	}
	if password == "" {
		return fmt.Errorf("ensure role %q: the password is empty, and PostgreSQL would store none", name)
	}
	var canLogin bool
	var stored *string
	err := conn.QueryRow(ctx, "SELECT rolcanlogin, rolpassword FROM pg_authid WHERE rolname = $1", name).Scan(&canLogin, &stored)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		err = setRolePassword(ctx, conn, "CREATE ROLE", name, password)
		if !isCode(err, codeDuplicateObject) {
			if err != nil {
				return fmt.Errorf("create role %q: %w", name, err)
			}
			return nil
		}
		// Someone created it meanwhile; make it right below.
	case err != nil:
		return fmt.Errorf("ensure role %q: %w", name, err)
	case canLogin && stored != nil && scramMatches(*stored, password):
		return nil
	}
	if err := setRolePassword(ctx, conn, "ALTER ROLE", name, password); err != nil {
		return fmt.Errorf("set password of role %q: %w", name, err)
	}
	return nil
}

// setRolePassword runs verb ("CREATE ROLE" or "ALTER ROLE") for name WITH
// LOGIN and the password. Non-ASCII passwords must be hashed by the server,
// which applies SASLprep as clients do; password_encryption is pinned to
// SCRAM for that statement so a changed server default cannot store MD5.
func setRolePassword(ctx context.Context, conn *pgx.Conn, verb, name, password string) error {
	secret := password
	if isASCII(password) {
		v, err := scramVerifier(password)
		if err != nil {
			return err
		}
		secret = v
	}
	if strings.ContainsRune(secret, 0) {
		return errors.New("the password contains a NUL byte")
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL password_encryption = 'scram-sha-256'"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, fmt.Sprintf("%s %s WITH LOGIN PASSWORD %s", verb, pgx.Identifier{name}.Sanitize(), quoteLiteral(secret)))
		return err
	})
}

// EnsureDatabase makes a database named name exist and be owned by owner,
// which must be an existing role.
func EnsureDatabase(ctx context.Context, conn *pgx.Conn, name, owner string) error {
	if name == "" || owner == "" {
		return fmt.Errorf("ensure database %q owned by %q: both names are needed", name, owner)
	}
	var current string
	err := conn.QueryRow(ctx, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", name).Scan(&current)
	if errors.Is(err, pgx.ErrNoRows) {
		// CREATE DATABASE cannot run in a transaction; pgx sends it alone.
		_, err = conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s OWNER %s", pgx.Identifier{name}.Sanitize(), pgx.Identifier{owner}.Sanitize()))
		if err == nil {
			return nil
		}
		if !isCode(err, codeDuplicateDB) {
			return fmt.Errorf("create database %q owned by %q: %w", name, owner, err)
		}
		err = conn.QueryRow(ctx, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", name).Scan(&current)
	}
	if err != nil {
		return fmt.Errorf("ensure database %q: %w", name, err)
	}
	if current == owner {
		return nil
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s OWNER TO %s", pgx.Identifier{name}.Sanitize(), pgx.Identifier{owner}.Sanitize())); err != nil {
		return fmt.Errorf("give database %q to %q (owned by %q): %w", name, owner, current, err)
	}
	return nil
}

// EnsureExtension makes an allowlisted extension exist in conn's database
// at the version the installed package provides: it is created if missing,
// and updated (ALTER EXTENSION ... UPDATE) if an older version is installed,
// so that installing a fixed package (pgvector 0.8.2) reaches every
// database. Extensions off the allowlist are refused before any SQL runs.
func EnsureExtension(ctx context.Context, conn *pgx.Conn, name string) error {
	if err := CheckExtensions([]string{name}); err != nil {
		return err
	}
	var installed *string
	var available string
	err := conn.QueryRow(ctx, "SELECT installed_version, default_version FROM pg_available_extensions WHERE name = $1", name).Scan(&installed, &available)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("extension %q is not installed on this server (no %s.control under PostgreSQL's share/extension): install its package (`make deps` for pgvector)", name, name)
	}
	if err != nil {
		return fmt.Errorf("ensure extension %q: %w", name, err)
	}
	ident := pgx.Identifier{name}.Sanitize()
	switch {
	case installed == nil:
		_, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS "+ident)
		// IF NOT EXISTS still loses a race with a concurrent CREATE.
		if err != nil && !isCode(err, codeDuplicateObject) && !isCode(err, codeUniqueViolation) {
			return fmt.Errorf("create extension %q: %w", name, err)
		}
	case *installed != available:
		if _, err := conn.Exec(ctx, "ALTER EXTENSION "+ident+" UPDATE"); err != nil {
			return fmt.Errorf("update extension %q from %s to %s: %w", name, *installed, available, err)
		}
	}
	return nil
}

// ExtensionVersion returns the version of an extension in conn's database,
// or "" when it is not created there.
func ExtensionVersion(ctx context.Context, conn *pgx.Conn, name string) (string, error) {
	var version string
	err := conn.QueryRow(ctx, "SELECT extversion FROM pg_extension WHERE extname = $1", name).Scan(&version)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("version of extension %q: %w", name, err)
	}
	return version, nil
}

// quoteLiteral quotes a string constant for SQL where parameters cannot be
// used (utility statements such as ALTER ROLE). The E'...' form treats
// backslashes as escapes whatever standard_conforming_strings says, so
// doubling backslashes and quotes is always right.
func quoteLiteral(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, "'", "''")
	return "E'" + s + "'"
}

func isCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

// CreateDatabaseIfMissing creates a database owned by owner unless one of
// that name exists, which is then left exactly as it is: a feature store may
// name any database, and handing, say, the postgres database to the
// application role (as EnsureDatabase would) must not happen.
func CreateDatabaseIfMissing(ctx context.Context, conn *pgx.Conn, name, owner string) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("database %s: %w", name, err)
	}
	if exists {
		return nil
	}
	return EnsureDatabase(ctx, conn, name, owner)
}
