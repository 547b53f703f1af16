package vectorstore

import (
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// isCode reports whether err is a server error with the SQLSTATE code.
func isCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// quoteLiteral quotes a string for the few statements that take no
// parameters (COMMENT ON, ALTER ROLE); the values come from the spec.
func quoteLiteral(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}

func isNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }
