package kuberuntime

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/postgres"
)

// DatabaseURL returns a superuser URI for a database of an instance,
// reached through its Service over TLS verified with the site CA, and
// authenticated by the controller's client certificate (the superuser's
// password works only inside the pod), creating the database (owned by the
// application role) if it is missing. The controller must run inside the
// cluster, where Service names resolve.
func (r *Runtime) DatabaseURL(ctx context.Context, namespace, name, database string) (string, error) {
	inst := &outpostv1.PostgresInstance{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, inst); err != nil {
		return "", fmt.Errorf("instance %s/%s: %w", namespace, name, err)
	}
	if inst.Status.Phase != outpostv1.InstanceRunning {
		return "", fmt.Errorf("instance %s/%s is %s, not Running", namespace, name, inst.Status.Phase)
	}
	var app corev1.Secret
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: AppSecretName(inst)}, &app); err != nil {
		return "", fmt.Errorf("credentials of %s/%s: %w", namespace, name, err)
	}
	caFile, certFile, keyFile, err := r.clientCert(ctx)
	if err != nil {
		return "", err
	}
	host, port := serviceHost(inst), PostgresPort
	if r.DatabaseEndpoint != nil {
		host, port = r.DatabaseEndpoint(inst)
	}
	superuserURL := func(db string) string {
		return postgres.ConnURL{Host: host, Port: port, User: postgres.Superuser, Database: db,
			RootCert: caFile, ClientCert: certFile, ClientKey: keyFile}.String()
	}
	conn, err := pgx.Connect(ctx, superuserURL("postgres"))
	if err != nil {
		return "", fmt.Errorf("connect to instance %s/%s: %w", namespace, name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := postgres.CreateDatabaseIfMissing(ctx, conn, database, string(app.Data[KeyUsername])); err != nil {
		return "", fmt.Errorf("instance %s/%s: %w", namespace, name, err)
	}
	return superuserURL(database), nil
}
