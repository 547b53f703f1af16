package harness_test

import (
	"context"
	"testing"

	"github.com/pgvector/pgvector-go"

	"github.com/outpostdata/outpost/postgres"
	"github.com/outpostdata/outpost/test/harness"
)

func TestPostgresAnswersNearestNeighbourQueriesWithPgvector(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()

	setup := pg.Connect(t, "postgres")
	if _, err := setup.Exec(ctx, "CREATE EXTENSION vector"); err != nil {
		t.Fatalf("CREATE EXTENSION vector: %v", err)
	}
	var version string
	if err := setup.QueryRow(ctx, "SELECT extversion FROM pg_extension WHERE extname = 'vector'").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if want := harness.PgvectorVersion(t); version != want {
		t.Errorf("pgvector version = %q, want the installed %s", version, want)
	}

	// A fresh connection registers pgvector's types now that the extension exists.
	conn := pg.Connect(t, "postgres")
	if _, err := conn.Exec(ctx, "CREATE TABLE items (name text PRIMARY KEY, embedding vector(3))"); err != nil {
		t.Fatal(err)
	}
	rows := map[string][]float32{
		"origin": {0, 0, 0},
		"near":   {1, 1, 1},
		"middle": {3, 3, 3},
		"far":    {10, 10, 10},
	}
	for name, v := range rows {
		if _, err := conn.Exec(ctx, "INSERT INTO items VALUES ($1, $2)", name, pgvector.NewVector(v)); err != nil {
			t.Fatalf("insert %s: %v", name, err)
		}
	}

	query := pgvector.NewVector([]float32{2.9, 3, 3.1})
	result, err := conn.Query(ctx, "SELECT name, embedding FROM items ORDER BY embedding <-> $1 LIMIT 3", query)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for result.Next() {
		var name string
		var embedding pgvector.Vector
		if err := result.Scan(&name, &embedding); err != nil {
			t.Fatal(err)
		}
		if want := rows[name]; len(embedding.Slice()) != 3 || embedding.Slice()[0] != want[0] {
			t.Errorf("%s came back as %v, stored %v", name, embedding.Slice(), want)
		}
		got = append(got, name)
	}
	if err := result.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{"middle", "near", "origin"}
	if len(got) != len(want) {
		t.Fatalf("nearest neighbours = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("nearest neighbours = %v, want %v", got, want)
		}
	}
}

func TestPostgresRefusesWrongPassword(t *testing.T) {
	pg := harness.StartPostgres(t)
	wrong := &postgres.Server{DataDir: pg.Server.DataDir, Port: pg.Server.Port, Password: "not-the-password"}
	if err := wrong.Ping(context.Background()); err == nil {
		t.Fatal("a connection with the wrong password succeeded; SCRAM authentication is not enforced")
	}
}
