package safepath_test

import (
	"strings"
	"testing"

	"github.com/outpostdata/outpost/controller/safepath"
)

func TestJoinBuildsPathsUnderTheRoot(t *testing.T) {
	got, err := safepath.Join("/state", safepath.Fixed("secrets"), safepath.Part{Field: "metadata.namespace", Value: "default"}, safepath.Part{Field: "spec.caSecret.name", Value: "minio-ca.v2"}, safepath.Fixed("ca.crt"))
	if err != nil || got != "/state/secrets/default/minio-ca.v2/ca.crt" {
		t.Fatalf("Join = %q, %v", got, err)
	}
}

func TestJoinRefusesNamesThatLeaveTheRootNamingTheField(t *testing.T) {
	for _, bad := range []string{"..", "../../..", "a/../../b", ".", "", "/etc", "a\x00b", `..\..`} {
		_, err := safepath.Join("/state", safepath.Fixed("secrets"), safepath.Part{Field: "spec.caSecret.name", Value: bad}, safepath.Fixed("ca.crt"))
		if err == nil || !strings.HasPrefix(err.Error(), "spec.caSecret.name: ") {
			t.Errorf("Join with name %q = %v, want a refusal naming spec.caSecret.name", bad, err)
		}
	}
}
