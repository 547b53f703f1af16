package kuberuntime_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/outpostdata/outpost/backup"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/instancemanager"
	"github.com/outpostdata/outpost/controller/kuberuntime"
)

// The runtime's backups are the instance manager's: POST /backup at
// ManagerURL with the instance's token, the type as a query, and the
// manifest it answers handed back with the backup's ID first.
func TestRunBackupAsksTheInstanceManagerWithTheInstancesToken(t *testing.T) {
	inst := &outpostv1.PostgresInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns"}}
	var got *http.Request
	im := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		if r.Header.Get("Authorization") != "Bearer s3cret-token" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		json.NewEncoder(w).Encode(instancemanager.BackupResult{Manifest: &backup.Manifest{ID: "20261130T000000Z"}, Location: "s3://b/ns/db"})
	}))
	defer im.Close()
	c := fake.NewClientBuilder().WithObjects(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: kuberuntime.BackupTokenSecretName(inst), Namespace: "ns"},
		Data:       map[string][]byte{kuberuntime.KeyBackupToken: []byte("s3cret-token")},
	}).Build()
	rt := &kuberuntime.Runtime{Client: c, ManagerURL: func(*outpostv1.PostgresInstance) string { return im.URL + "/" }}

	var started string
	m, loc, err := rt.RunBackup(context.Background(), inst, outpostv1.BackupIncremental, func(id string) { started = id })
	if err != nil {
		t.Fatal(err)
	}
	if got.Method != http.MethodPost || got.URL.Path != "/backup" || got.URL.Query().Get("type") != string(outpostv1.BackupIncremental) {
		t.Errorf("asked %s %s, want POST /backup?type=%s", got.Method, got.URL, outpostv1.BackupIncremental)
	}
	if m.ID != "20261130T000000Z" || started != m.ID || loc != "s3://b/ns/db" {
		t.Errorf("manifest %q, started %q, location %q", m.ID, started, loc)
	}

	// Without the token the instance manager is not asked at all.
	got = nil
	other := inst.DeepCopy()
	other.Name = "other"
	if _, _, err := rt.RunBackup(context.Background(), other, "", func(string) {}); err == nil || !strings.Contains(err.Error(), kuberuntime.BackupTokenSecretName(other)) || got != nil {
		t.Errorf("no token Secret: err %v, asked %v", err, got)
	}
}
