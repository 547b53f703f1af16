package singlehost

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/localruntime"
	"github.com/outpostdata/outpost/controller/safepath"
)

// TestDirectModeTrustsTheHubCAFromTheSecretsFile: on one host a
// DataController's connectivity.hub.caSecret is the file
// secrets/NAMESPACE/NAME/ca.crt in the state directory. The client made
// from it reaches a hub whose certificate that CA signed; a missing file
// and an http:// hub without allowInsecureHub are errors naming the field.
func TestDirectModeTrustsTheHubCAFromTheSecretsFile(t *testing.T) {
	hub := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer hub.Close()
	sd := StateDir{Root: t.TempDir()}
	dc := &outpostv1.DataController{}
	dc.Name, dc.Namespace = "site", "default"
	dc.Spec.Connectivity = outpostv1.Connectivity{Mode: outpostv1.ConnectivityDirect,
		Hub: &outpostv1.Hub{URL: hub.URL, CASecret: &outpostv1.LocalObjectReference{Name: "hub-ca"}}}

	if _, err := hubClient(sd, dc); err == nil || !strings.Contains(err.Error(), "connectivity.hub.caSecret hub-ca") {
		t.Fatalf("without the CA file: %v, want an error naming connectivity.hub.caSecret", err)
	}
	file, err := localruntime.SecretFile(sd.Root, "default", safepath.Part{Field: "spec.connectivity.hub.caSecret.name", Value: "hub-ca"}, "ca.crt")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		t.Fatal(err)
	}
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hub.Certificate().Raw})
	if err := os.WriteFile(file, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	client, err := hubClient(sd, dc)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Get(hub.URL)
	if err != nil {
		t.Fatalf("through the hub's CA: %v", err)
	}
	resp.Body.Close()
	if _, err := http.Get(hub.URL); err == nil {
		t.Fatal("the system roots trusted the test hub's certificate, so the test proves nothing")
	}

	dc.Spec.Connectivity.Hub.URL = "http://127.0.0.1:8470"
	if _, err := hubClient(sd, dc); err == nil || !strings.Contains(err.Error(), "allowInsecureHub") {
		t.Fatalf("an http:// hub: %v, want a refusal naming allowInsecureHub", err)
	}
	dc.Spec.Connectivity.Hub.AllowInsecureHub = true
	if _, err := hubClient(sd, dc); err != nil {
		t.Fatalf("an http:// hub with allowInsecureHub: %v", err)
	}
}
