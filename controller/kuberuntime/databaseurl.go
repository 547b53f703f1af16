package kuberuntime

import (
	"context"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/postgres"
)

var _ controller.DatabaseLocator = (*Runtime)(nil)

// DatabaseURL returns a superuser URI for a database of an instance,
// reached through its Service with the password from its Secret, creating
// the database (owned by the application role) if it is missing. The
// controller must run inside the cluster, where Service names resolve.
func (r *Runtime) DatabaseURL(ctx context.Context, namespace, name, database string) (string, error) {
	inst := &outpostv1.PostgresInstance{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, inst); err != nil {
		return "", fmt.Errorf("instance %s/%s: %w", namespace, name, err)
	}
	if inst.Status.Phase != outpostv1.InstanceRunning {
		return "", fmt.Errorf("instance %s/%s is %s, not Running", namespace, name, inst.Status.Phase)
	}
	var secret corev1.Secret
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: SecretName(inst)}, &secret); err != nil {
		return "", fmt.Errorf("credentials of %s/%s: %w", namespace, name, err)
	}
	superuserURL := func(db string) string {
		u := url.URL{Scheme: "postgres", User: url.UserPassword(postgres.Superuser, string(secret.Data[KeySuperuserPassword])),
			Host: Endpoint(inst), Path: "/" + db, RawQuery: "sslmode=disable"}
		return u.String()
	}
	conn, err := pgx.Connect(ctx, superuserURL("postgres"))
	if err != nil {
		return "", fmt.Errorf("connect to instance %s/%s: %w", namespace, name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := postgres.CreateDatabaseIfMissing(ctx, conn, database, string(secret.Data[KeyUsername])); err != nil {
		return "", fmt.Errorf("instance %s/%s: %w", namespace, name, err)
	}
	return superuserURL(database), nil
}
