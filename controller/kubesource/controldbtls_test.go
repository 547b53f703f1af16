package kubesource

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/outpostdata/outpost/controller/kuberuntime"
	"github.com/outpostdata/outpost/test/harness"
)

// The chart's two controller replicas start together, and both find no
// controldb TLS Secret. The one whose create loses must use the other's
// Secret, not fail its start (on a real cluster it crash-looped once).
// The interceptor makes the race certain: the other replica creates the
// Secret between this one's Get and its Create.
func TestControlDBTLSLoserOfTheCreateRaceUsesTheWinnersSecret(t *testing.T) {
	api := harness.StartAPIServer(t)
	ctx := context.Background()
	const ns, name = "default", "outpost-controldb"
	base, err := client.NewWithWatch(api.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	raced := false
	c := interceptor.NewClient(base, interceptor.Funcs{
		Get: func(ctx context.Context, w client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if key.Name != ControlDBTLSSecretName(name) || raced {
				return w.Get(ctx, key, obj, opts...)
			}
			raced = true
			if _, err := ensureControlDBTLS(ctx, base, ns, name); err != nil { // the other replica
				t.Fatalf("the other replica: %v", err)
			}
			return apierrors.NewNotFound(corev1.Resource("secrets"), key.Name)
		},
	})
	ca, err := ensureControlDBTLS(ctx, c, ns, name)
	if err != nil {
		t.Fatalf("the replica that lost the race: %v", err)
	}
	if !raced {
		t.Fatal("the race did not happen: the test no longer reaches the Secret's Get")
	}
	var s corev1.Secret
	if err := base.Get(ctx, client.ObjectKey{Namespace: ns, Name: ControlDBTLSSecretName(name)}, &s); err != nil {
		t.Fatal(err)
	}
	if string(s.Data[kuberuntime.KeyCA]) != string(ca) || len(s.Data[kuberuntime.KeyTLSCert]) == 0 || len(s.Data[kuberuntime.KeyTLSKey]) == 0 {
		t.Errorf("controldb TLS Secret after the race: keys %v, CA matches %v", keysOf(s.Data), string(s.Data[kuberuntime.KeyCA]) == string(ca))
	}
}

func keysOf(m map[string][]byte) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
