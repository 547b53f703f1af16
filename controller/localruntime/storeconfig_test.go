package localruntime_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/localruntime"
	"github.com/outpostdata/outpost/test/harness"
)

func TestObjectStoreCASecretIsAFileInTheStateDirectory(t *testing.T) {
	state := harness.TempDir(t)
	creds := filepath.Join(state, "creds")
	if err := os.WriteFile(creds, []byte("accessKeyID=a\nsecretAccessKey=b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	store := &outpostv1.ObjectStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: "plant", Name: "nas"},
		Spec: outpostv1.ObjectStoreSpec{
			Endpoint:    "https://127.0.0.1:9000",
			Bucket:      "b",
			CASecret:    &outpostv1.LocalObjectReference{Name: "nas-ca"},
			Credentials: outpostv1.ObjectStoreCredentials{File: creds},
		},
	}
	want := filepath.Join(state, "secrets", "plant", "nas-ca", "ca.crt")
	_, err := localruntime.StoreConfig(state, store)
	if err == nil || !strings.Contains(err.Error(), "spec.caSecret nas-ca") || !strings.Contains(err.Error(), want) {
		t.Fatalf("missing CA bundle: got %v, want an error naming spec.caSecret and %s", err, want)
	}
	if err := os.MkdirAll(filepath.Dir(want), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(want, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := localruntime.StoreConfig(state, store)
	if err != nil || cfg.CAFile != want || cfg.AccessKey != "a" {
		t.Fatalf("StoreConfig = %+v, %v; want CAFile %s and the file's credentials", cfg, err, want)
	}
}
