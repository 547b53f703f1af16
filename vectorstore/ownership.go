package vectorstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ErrNotOwned is returned by Ensure when a table a store would use exists
// but Outpost did not create it for that store: an application's own table
// of the same name, or the tables of another store whose name maps to the
// same table names ("a-b" and "a.b" both become a_b). A store never adopts,
// alters or drops such a table.
var ErrNotOwned = errors.New("not created by Outpost for this feature store")

// registry records, in each database, which relations Outpost created for
// which store (and the store object's uid). Ensure and Drop consult it
// before any ALTER or DROP; names alone prove nothing.
const registry = metaSchema + ".feature_store_tables"

// relations are the unquoted names of the store's tables and view.
func (s *Store) relations() []string {
	return []string{s.tableName, s.tableName + "_past", s.tableName + "_history"}
}

// claim checks, inside tx and under the store's advisory lock, that every
// relation of the store is either free or recorded as this store's, and
// records the free ones for it, so that what Ensure creates next is known
// to be Outpost's. It refuses (ErrNotOwned) a relation that exists but is
// not recorded, or is recorded for another store, naming both.
//
// Stores made before the registry existed are recognised by what Outpost
// wrote then: their spec under their own name in outpost.feature_stores and
// Outpost's comment on the table.
func (s *Store) claim(ctx context.Context, tx pgx.Tx, uid string) error {
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+registry+` (
	relation text PRIMARY KEY,
	store text NOT NULL,
	store_uid text NOT NULL DEFAULT '',
	created_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("feature store registry: %w", err)
	}
	legacy, err := s.madeBeforeRegistry(ctx, tx)
	if err != nil {
		return err
	}
	for _, rel := range s.relations() {
		var owner *string
		var exists bool
		err := tx.QueryRow(ctx, `SELECT (SELECT store FROM `+registry+` WHERE relation = $1), to_regclass($2) IS NOT NULL`,
			rel, pgx.Identifier{"public", rel}.Sanitize()).Scan(&owner, &exists)
		if err != nil {
			return fmt.Errorf("feature store %q: ownership of public.%s: %w", s.spec.Name, rel, err)
		}
		switch {
		case owner != nil && *owner != s.spec.Name:
			return fmt.Errorf("feature store %q: table public.%s belongs to feature store %q, whose name maps to the same tables: %w; rename one of the two",
				s.spec.Name, rel, *owner, ErrNotOwned)
		case owner == nil && exists && !legacy:
			return fmt.Errorf("feature store %q: table public.%s already exists in the database and was %w; rename the feature store (or the table)",
				s.spec.Name, rel, ErrNotOwned)
		}
	}
	_, err = tx.Exec(ctx, `INSERT INTO `+registry+` (relation, store, store_uid) SELECT r, $2, $3 FROM unnest($1::text[]) r
ON CONFLICT (relation) DO UPDATE SET store_uid = EXCLUDED.store_uid WHERE `+registry+`.store = EXCLUDED.store`,
		s.relations(), s.spec.Name, uid)
	if err != nil {
		return fmt.Errorf("feature store %q: record its tables: %w", s.spec.Name, err)
	}
	return nil
}

// madeBeforeRegistry reports whether the store's latest table is one an
// earlier Outpost created for this very store: its spec is recorded under
// the store's name and the table carries Outpost's comment naming it.
func (s *Store) madeBeforeRegistry(ctx context.Context, tx pgx.Tx) (bool, error) {
	var specs bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", metaSchema+".feature_stores").Scan(&specs); err != nil || !specs {
		return false, err // without outpost.feature_stores no store was ever made here
	}
	var recorded bool
	var comment *string
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+metaSchema+`.feature_stores WHERE name = $1),
	obj_description(to_regclass($2), 'pg_class')`, s.spec.Name, s.table).Scan(&recorded, &comment)
	if err != nil {
		return false, fmt.Errorf("feature store %q: %w", s.spec.Name, err)
	}
	return recorded && comment != nil && strings.HasPrefix(*comment, "Outpost feature store "+s.spec.Name+":"), nil
}

// owned returns which of the store's relations the registry records as
// its own, so Drop removes those and nothing else.
func (s *Store) owned(ctx context.Context, tx pgx.Tx) (map[string]bool, error) {
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", registry).Scan(&exists); err != nil || !exists {
		return nil, err
	}
	rows, err := tx.Query(ctx, "SELECT relation FROM "+registry+" WHERE store = $1 AND relation = ANY($2)", s.spec.Name, s.relations())
	if err != nil {
		return nil, err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("feature store %q: its recorded tables: %w", s.spec.Name, err)
	}
	owned := map[string]bool{}
	for _, n := range names {
		owned[n] = true
	}
	return owned, nil
}
