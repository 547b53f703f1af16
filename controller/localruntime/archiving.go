package localruntime

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/archiving"
)

// watchArchiving reads the running server's WAL archiver for the
// WALArchiving condition, and puts Outpost's archive settings back when a
// superuser changed them with ALTER SYSTEM: the drift found is in the
// returned status, so the condition and an event name it.
func (r *Runtime) watchArchiving(ctx context.Context, in *instance, inst *outpostv1.PostgresInstance) (*archiving.Status, error) {
	conn, err := pgx.Connect(ctx, in.server.URL("postgres"))
	if err != nil {
		return nil, fmt.Errorf("read the WAL archiver of %s/%s: %w", inst.Namespace, inst.Name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	st, err := archiving.Read(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", inst.Namespace, inst.Name, err)
	}
	drift := archiving.CheckDrift(st, in.server.ManagedSettings)
	if err := archiving.RestoreManaged(ctx, conn, drift, r.Log.With("instance", inst.Namespace+"/"+inst.Name)); err != nil {
		return st, fmt.Errorf("%s/%s: %w", inst.Namespace, inst.Name, err)
	}
	return st, nil
}
