package localruntime

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

func TestDesiredParametersPreloadPgStatStatementsAndKeepUserLibraries(t *testing.T) {
	inst := &outpostv1.PostgresInstance{Spec: outpostv1.PostgresInstanceSpec{
		Resources:  outpostv1.InstanceResources{CPU: resource.MustParse("1"), Memory: resource.MustParse("1Gi")},
		Extensions: []outpostv1.Extension{"vector", "pg_stat_statements"},
	}}
	if got := desiredParameters(inst)["shared_preload_libraries"]; got != "pg_stat_statements" {
		t.Errorf("shared_preload_libraries = %q, want pg_stat_statements", got)
	}
	inst.Spec.Parameters = map[string]string{"shared_preload_libraries": "auto_explain", "work_mem": "8MB"}
	params := desiredParameters(inst)
	if got := params["shared_preload_libraries"]; got != "auto_explain,pg_stat_statements" {
		t.Errorf("shared_preload_libraries = %q, want the user's auto_explain kept", got)
	}
	if params["work_mem"] != "8MB" || params["shared_buffers"] != "256MB" {
		t.Errorf("user parameters on top of memory settings: %v", params)
	}
	inst.Spec.Parameters["shared_preload_libraries"] = "pg_stat_statements, auto_explain"
	if got := desiredParameters(inst)["shared_preload_libraries"]; got != "pg_stat_statements, auto_explain" {
		t.Errorf("an explicit pg_stat_statements was rewritten to %q", got)
	}
}
