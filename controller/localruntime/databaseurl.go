package localruntime

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/outpostdata/outpost/postgres"
)

// DatabaseURL returns a superuser URI for a database of a running local
// instance, creating the database, owned by the application role, if it
// is missing: a FeatureStore may name a database the instance's spec does
// not list.
func (r *Runtime) DatabaseURL(ctx context.Context, namespace, name, database string) (string, error) {
	key := namespace + "/" + name
	r.mu.Lock()
	in, ok := r.instances[key]
	r.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("instance %s is not known to this controller yet: is there a PostgresInstance %s?", key, key)
	}
	if !in.supervisor.Ready() {
		return "", fmt.Errorf("instance %s is not accepting connections yet", key)
	}
	conn, err := pgx.Connect(ctx, in.server.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("connect to instance %s: %w", key, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := postgres.CreateDatabaseIfMissing(ctx, conn, database, in.creds.Username); err != nil {
		return "", fmt.Errorf("instance %s: %w", key, err)
	}
	return in.server.URL(database), nil
}
