package vectorstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrDimensionsChanged is returned by Ensure when the spec asks for a
// different embedding dimension than the table has. Embeddings of one size
// cannot become another; it takes a new store.
var ErrDimensionsChanged = errors.New("dimensions cannot change")

// EnsureOptions tune Ensure. The zero value is fine.
type EnsureOptions struct {
	// OnIndexProgress, if set, receives progress while an index builds.
	OnIndexProgress func(IndexProgress)
	// UID identifies the store's object (the FeatureStore's metadata.uid);
	// it is recorded with the tables created for the store.
	UID string
}

// EnsureResult says what Ensure did.
type EnsureResult struct {
	Created        bool
	AddedFeatures  []string
	IndexBuilt     bool
	IndexRebuilt   bool
	PrunedVersions int64
	// TuningError is why the search defaults of an index built here were
	// not measured; searches keep the defaults they had, and the next
	// ingest measures.
	TuningError error
}

// Ensure makes the store's tables, index, read-only role and history
// match spec, migrating safely: new features become new columns, changed
// index parameters rebuild the index CONCURRENTLY, and a changed dimension
// or vector type is refused. Tables Outpost did not create for this store
// are refused (ErrNotOwned) before anything changes. Running it twice does no harm. The vector
// extension must exist in the database.
func Ensure(ctx context.Context, pool *pgxpool.Pool, spec Spec, opts EnsureOptions) (*Store, EnsureResult, error) {
	var res EnsureResult
	spec = spec.withDefaults()
	if err := spec.Validate(); err != nil {
		return nil, res, fmt.Errorf("feature store %q: %w", spec.Name, err)
	}
	s := newStore(pool, spec)
	if err := s.ensureTables(ctx, &res, opts.UID); err != nil {
		return nil, res, err
	}
	if err := s.ensureReader(ctx); err != nil {
		return nil, res, err
	}
	if err := s.ensureIndex(ctx, &res, opts.OnIndexProgress); err != nil {
		return nil, res, err
	}
	if res.IndexBuilt || res.IndexRebuilt {
		res.TuningError = s.ensureTuning(ctx)
	}
	if err := s.ensureFeatureIndexes(ctx); err != nil {
		return nil, res, err
	}
	n, err := s.prune(ctx, pool)
	if err != nil {
		return nil, res, err
	}
	res.PrunedVersions = n
	return s, res, nil
}

func (s *Store) ensureTables(ctx context.Context, res *EnsureResult, uid string) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// Two controllers (or a controller and a user's Go program) shaping the
	// same store at once would race on CREATE and ALTER.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('outpost.featurestore.' || $1))", s.tableName); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+metaSchema+`;
CREATE TABLE IF NOT EXISTS `+metaSchema+`.feature_stores (
	name text PRIMARY KEY,
	spec jsonb NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS `+metaSchema+`.search_tuning (
	name text PRIMARY KEY,
	tuning jsonb NOT NULL)`); err != nil {
		return fmt.Errorf("feature store metadata: %w", err)
	}
	// Before anything is created, altered or given away: the tables must
	// be this store's or free (see ownership.go).
	if err := s.claim(ctx, tx, uid); err != nil {
		return err
	}
	current, exists, err := s.embeddingType(ctx, tx)
	if err != nil {
		return err
	}
	if exists {
		if current != s.spec.columnType() {
			return fmt.Errorf("feature store %q: spec asks for %s embeddings but table %s holds %s: %w; create a new feature store and ingest into it",
				s.spec.Name, s.spec.columnType(), s.Table(), current, ErrDimensionsChanged)
		}
		if err := s.splitHistory(ctx, tx); err != nil {
			return err
		}
		if err := s.addFeatures(ctx, tx, res); err != nil {
			return err
		}
	} else {
		if err := s.createTables(ctx, tx); err != nil {
			return err
		}
		res.Created = true
	}
	// The view lists the tables' columns as they are now, so a feature
	// added since is added to it too (at its end, which CREATE OR REPLACE
	// allows). Replacing it takes an exclusive lock, so only on a change.
	if res.Created || len(res.AddedFeatures) > 0 || !s.hasHistoryView(ctx, tx) {
		if err := s.createHistoryView(ctx, tx); err != nil {
			return err
		}
	}
	if err := s.giveToOwner(ctx, tx); err != nil {
		return err
	}
	var owner string
	if err := tx.QueryRow(ctx, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()").Scan(&owner); err != nil {
		return fmt.Errorf("owner of the database of %q: %w", s.spec.Name, err)
	}
	if err := grantSpecs(ctx, tx, owner); err != nil {
		return err
	}
	if err := grantTuning(ctx, tx, owner, true); err != nil {
		return err
	}
	raw, err := json.Marshal(s.spec)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+metaSchema+`.feature_stores (name, spec) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET spec = EXCLUDED.spec, updated_at = now()`, s.spec.Name, raw); err != nil {
		return fmt.Errorf("record spec of %q: %w", s.spec.Name, err)
	}
	return tx.Commit(ctx)
}

// giveToOwner makes the database's owner (the application role) own the
// tables and view, so applications can read and ingest without the
// superuser. ALTER ... OWNER locks a table against every reader even when
// the owner is already right, and Ensure runs on every reconcile, so it
// runs only where the owner differs.
func (s *Store) giveToOwner(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `SELECT c.oid::regclass::text, CASE c.relkind WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END, pg_get_userbyid(d.datdba)
FROM pg_class c, pg_database d
WHERE d.datname = current_database() AND c.relowner <> d.datdba
	AND c.oid IN (to_regclass($1), to_regclass($2), to_regclass($3))`, s.table, s.past, s.history)
	if err != nil {
		return err
	}
	changes, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([3]string, error) {
		var x [3]string
		return x, r.Scan(&x[0], &x[1], &x[2])
	})
	if err != nil {
		return fmt.Errorf("owners of %q: %w", s.spec.Name, err)
	}
	for _, c := range changes {
		if _, err := tx.Exec(ctx, fmt.Sprintf("ALTER %s %s OWNER TO %s", c[1], c[0], ident(c[2]))); err != nil {
			return fmt.Errorf("give %s to %s: %w", c[0], c[2], err)
		}
	}
	return nil
}

// hasHistoryView reports whether <store>_history is already the view.
func (s *Store) hasHistoryView(ctx context.Context, tx pgx.Tx) bool {
	var view bool
	err := tx.QueryRow(ctx, "SELECT relkind = 'v' FROM pg_class WHERE oid = to_regclass($1)", s.history).Scan(&view)
	return err == nil && view
}

// embeddingType returns the embedding column's type, and whether the
// latest table exists.
func (s *Store) embeddingType(ctx context.Context, tx pgx.Tx) (string, bool, error) {
	var t string
	err := tx.QueryRow(ctx, `SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
WHERE a.attrelid = to_regclass($1) AND a.attname = 'embedding' AND NOT a.attisdropped`, s.table).Scan(&t)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("inspect %s: %w", s.Table(), err)
	}
	return t, true, nil
}

func (s *Store) featureColumns() string {
	var b strings.Builder
	for _, f := range s.spec.Features {
		fmt.Fprintf(&b, ",\n\t%s %s", ident(f.Name), f.Type.sqlType())
	}
	return b.String()
}

// createTables makes the latest-values table and the table of superseded
// versions. History is not a third copy: the current version of an entity
// lives only in the latest table, and moves to the past table when a newer
// one replaces it. So a bulk load writes each row once, like a plain COPY,
// and the view <store>_history (both tables) still lists every version.
func (s *Store) createTables(ctx context.Context, tx pgx.Tx) error {
	emb := s.spec.columnType()
	_, err := tx.Exec(ctx, fmt.Sprintf(`CREATE TABLE %s (
	key text PRIMARY KEY,
	embedding %s NOT NULL%s,
	event_time timestamptz NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE %s (LIKE %s INCLUDING DEFAULTS INCLUDING STORAGE, PRIMARY KEY (key, event_time));
COMMENT ON TABLE %s IS %s;
COMMENT ON TABLE %s IS %s`,
		s.table, emb, s.featureColumns(),
		s.past, s.table,
		s.table, quoteLiteral("Outpost feature store "+s.spec.Name+": latest values, one row per key"),
		s.past, quoteLiteral("Outpost feature store "+s.spec.Name+": superseded versions; "+s.tableName+"_history lists every version")))
	if err != nil {
		return fmt.Errorf("create tables of %q: %w", s.spec.Name, err)
	}
	return nil
}

// createHistoryView (re)defines <store>_history as every version: the
// latest table's rows and the past table's.
func (s *Store) createHistoryView(ctx context.Context, tx pgx.Tx) error {
	cols, err := s.tableColumns(ctx, tx)
	if err != nil {
		return err
	}
	list := strings.Join(cols, ", ")
	_, err = tx.Exec(ctx, fmt.Sprintf(`CREATE OR REPLACE VIEW %s AS SELECT %s FROM %s UNION ALL SELECT %s FROM %s;
COMMENT ON VIEW %s IS %s`, s.history, list, s.table, list, s.past,
		s.history, quoteLiteral("Outpost feature store "+s.spec.Name+": every version, for as-of lookups")))
	if err != nil {
		return fmt.Errorf("history view of %q: %w", s.spec.Name, err)
	}
	return nil
}

// tableColumns lists the latest table's columns, quoted, in table order.
func (s *Store) tableColumns(ctx context.Context, tx pgx.Tx) ([]string, error) {
	rows, err := tx.Query(ctx, `SELECT attname FROM pg_attribute
WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, s.table)
	if err != nil {
		return nil, err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("columns of %s: %w", s.Table(), err)
	}
	for i, n := range names {
		names[i] = ident(n)
	}
	return names, nil
}

// splitHistory moves a store made before the past table existed, whose
// _history was a table holding every version, to the current layout: the
// versions not in the latest table go to the past table, and _history
// becomes the view. It is one transaction with the rest of Ensure.
func (s *Store) splitHistory(ctx context.Context, tx pgx.Tx) error {
	var kind string
	err := tx.QueryRow(ctx, "SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)", s.history).Scan(&kind)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("inspect %s: %w", s.history, err)
	}
	if kind != "r" {
		// The current layout, unless someone dropped the past table.
		if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (LIKE %s INCLUDING DEFAULTS INCLUDING STORAGE, PRIMARY KEY (key, event_time))", s.past, s.table)); err != nil {
			return fmt.Errorf("past table of %q: %w", s.spec.Name, err)
		}
		return nil
	}
	cols, err := s.tableColumns(ctx, tx)
	if err != nil {
		return err
	}
	list := strings.Join(cols, ", ")
	_, err = tx.Exec(ctx, fmt.Sprintf(`CREATE TABLE %[1]s (LIKE %[2]s INCLUDING DEFAULTS INCLUDING STORAGE, PRIMARY KEY (key, event_time));
INSERT INTO %[1]s (%[4]s) SELECT %[4]s FROM %[3]s h
WHERE NOT EXISTS (SELECT 1 FROM %[2]s l WHERE l.key = h.key AND l.event_time = h.event_time);
DROP TABLE %[3]s`, s.past, s.table, s.history, list))
	if err != nil {
		return fmt.Errorf("move history of %q to %s: %w", s.spec.Name, s.past, err)
	}
	return nil
}

// addFeatures adds a column for each feature the tables lack, and refuses
// a feature whose type changed: converting data in place could fail half
// way or lose precision.
func (s *Store) addFeatures(ctx context.Context, tx pgx.Tx, res *EnsureResult) error {
	rows, err := tx.Query(ctx, `SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`, s.table)
	if err != nil {
		return err
	}
	have := map[string]string{}
	for rows.Next() {
		var n, t string
		if err := rows.Scan(&n, &t); err != nil {
			return err
		}
		have[n] = t
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, f := range s.spec.Features {
		t, ok := have[f.Name]
		if ok {
			if t != f.Type.sqlType() {
				return fmt.Errorf("feature store %q: features[%s] is %s but column %s.%s is %s; a feature's type cannot change: add a feature with a new name",
					s.spec.Name, f.Name, f.Type, s.Table(), f.Name, t)
			}
			continue
		}
		for _, table := range []string{s.table, s.past} {
			// Adding a nullable column without a default only touches the
			// catalog: no rewrite, no long lock.
			if _, err := tx.Exec(ctx, fmt.Sprintf("ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s %s", table, ident(f.Name), f.Type.sqlType())); err != nil {
				return fmt.Errorf("add feature %s to %s: %w", f.Name, table, err)
			}
		}
		res.AddedFeatures = append(res.AddedFeatures, f.Name)
	}
	return nil
}
