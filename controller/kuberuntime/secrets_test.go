package kuberuntime_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/test/harness"
)

// An instance whose credentials are in the one Secret of before the split
// (say, kept by deletionPolicy Retain) keeps its passwords, which its data
// directory was initialised with: they move into the app, superuser and
// backup token Secrets, and the old Secret, readable by whoever reads the
// app's, goes.
func TestTheSharedCredentialsSecretIsSplitKeepingItsPasswords(t *testing.T) {
	api := harness.StartAPIServer(t)
	startController(t, api, &syncBuffer{})
	c, ctx := api.Client, context.Background()
	old := map[string]string{"username": "app", "password": "old-app-pw", "superuser-password": "old-super-pw", "backup-token": "old-token"}
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kept-credentials", Namespace: "default",
		Labels: map[string]string{"app.kubernetes.io/managed-by": "outpost", "outpost.dev/instance": "kept"}}, StringData: old}); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, newInstance("kept", outpostv1.DeletionRetain)); err != nil {
		t.Fatal(err)
	}
	want := map[string][2]string{"kept-app": {"password", "old-app-pw"}, "kept-superuser": {"superuser-password", "old-super-pw"}, "kept-backup-token": {"backup-token", "old-token"}}
	eventually(t, 30*time.Second, "the split Secrets with the old passwords", func() error {
		for name, kv := range want {
			var s corev1.Secret
			if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, &s); err != nil {
				return err
			}
			if string(s.Data[kv[0]]) != kv[1] {
				return errorf(name + "/" + kv[0] + " is not the old value")
			}
		}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "kept-credentials"}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
			return errorf("kept-credentials still exists")
		}
		return nil
	})
}
