package localruntime

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

func TestDesiredParametersPreloadPgStatStatements(t *testing.T) {
	inst := &outpostv1.PostgresInstance{Spec: outpostv1.PostgresInstanceSpec{
		Resources:  outpostv1.InstanceResources{CPU: resource.MustParse("1"), Memory: resource.MustParse("1Gi")},
		Extensions: []outpostv1.Extension{"vector", "pg_stat_statements"},
		Parameters: map[string]string{"work_mem": "8MB"},
	}}
	params := desiredParameters(inst)
	if got := params["shared_preload_libraries"]; got != "pg_stat_statements" {
		t.Errorf("shared_preload_libraries = %q, want pg_stat_statements", got)
	}
	if params["work_mem"] != "8MB" || params["shared_buffers"] != "256MB" {
		t.Errorf("user parameters on top of memory settings: %v", params)
	}
	inst.Spec.Extensions = []outpostv1.Extension{"vector"}
	if got, ok := desiredParameters(inst)["shared_preload_libraries"]; ok {
		t.Errorf("shared_preload_libraries = %q without pg_stat_statements, want it unset", got)
	}
}
