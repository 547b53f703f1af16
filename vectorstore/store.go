package vectorstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	pgxvec "github.com/pgvector/pgvector-go/pgx"
)

// Connect opens a connection pool to a database in which pgvector is
// created, with pgvector's types registered on every connection: binary
// COPY of vectors fails without them, with a misleading message about
// 16000 dimensions.
func Connect(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database URL: %w", err)
	}
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		if err := pgxvec.RegisterTypes(ctx, conn); err != nil {
			return fmt.Errorf("register pgvector types (is the vector extension created in database %q?): %w", conn.Config().Database, err)
		}
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cfg.ConnConfig.Database, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to %s: %w", cfg.ConnConfig.Database, err)
	}
	return pool, nil
}

// Store is one feature store in one database.
type Store struct {
	pool *pgxpool.Pool
	spec Spec
	// table, past and history are quoted identifiers: the latest-values
	// table, the table of superseded versions, and the view of every
	// version (the two tables together).
	table, past, history string
	// tableName is the unquoted latest-values table name.
	tableName string
	// tuningCache holds the search defaults Calibrate measured.
	tuningCache tuningCache
}

// ErrNotFound is returned by Open for a store that Ensure never created.
var ErrNotFound = errors.New("feature store not found")

// metaSchema holds the specs of the stores in a database, so that ingest
// and search need only a store's name, and the search defaults Calibrate
// measured (search_tuning). The database owner and readers may read both,
// the owner may record search defaults, and nothing else in it.
const metaSchema = "outpost"

func newStore(pool *pgxpool.Pool, spec Spec) *Store {
	t := TableName(spec.Name)
	return &Store{
		pool: pool, spec: spec, tableName: t,
		table:   pgx.Identifier{"public", t}.Sanitize(),
		past:    pgx.Identifier{"public", t + "_past"}.Sanitize(),
		history: pgx.Identifier{"public", t + "_history"}.Sanitize(),
	}
}

// Open returns the store named name, as Ensure last shaped it.
func Open(ctx context.Context, pool *pgxpool.Pool, name string) (*Store, error) {
	var raw []byte
	err := pool.QueryRow(ctx, "SELECT spec FROM "+metaSchema+".feature_stores WHERE name = $1", name).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) || isCode(err, "42P01") {
		return nil, fmt.Errorf("feature store %q: %w (has the controller reconciled it yet?)", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("feature store %q: %w", name, err)
	}
	var spec Spec
	if err := json.Unmarshal(raw, &spec); err != nil {
		return nil, fmt.Errorf("feature store %q: stored spec is damaged: %w", name, err)
	}
	return newStore(pool, spec.withDefaults()), nil
}

// Spec returns the store's spec with defaults filled in.
func (s *Store) Spec() Spec { return s.spec }

// Table is the schema-qualified name of the latest-values table.
func (s *Store) Table() string { return "public." + s.tableName }
