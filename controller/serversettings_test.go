package controller

import (
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

func TestDesiredServerSettings(t *testing.T) {
	inst := &outpostv1.PostgresInstance{Spec: outpostv1.PostgresInstanceSpec{
		Resources:  outpostv1.InstanceResources{CPU: resource.MustParse("1"), Memory: resource.MustParse("1Gi")},
		Extensions: []outpostv1.Extension{"vector", "pg_stat_statements"},
		Databases:  []string{"more"},
		Parameters: map[string]string{"work_mem": "8MB", "statement_timeout": "5s"},
	}}
	s := DesiredServerSettings(inst)
	if s.Database != "app" || s.Owner != "app" {
		t.Errorf("without spec.bootstrap.initdb: database %q owner %q, want app and app", s.Database, s.Owner)
	}
	if !slices.Equal(s.Databases, []string{"more"}) || !slices.Equal(s.Extensions, []string{"vector", "pg_stat_statements"}) {
		t.Errorf("databases %v extensions %v, want the spec's", s.Databases, s.Extensions)
	}
	if got := s.Parameters["shared_preload_libraries"]; got != "pg_stat_statements" {
		t.Errorf("shared_preload_libraries = %q, want pg_stat_statements", got)
	}
	if s.Parameters["work_mem"] != "8MB" || s.Parameters["shared_buffers"] != "256MB" {
		t.Errorf("user parameters on top of memory settings: %v", s.Parameters)
	}
	if _, ok := ResourceParameters(inst)["statement_timeout"]; ok {
		t.Errorf("ResourceParameters has the user's statement_timeout; want memory and CPU settings only")
	}
	key := s.Key()

	inst.Spec.Bootstrap.InitDB = &outpostv1.InitDBBootstrap{Database: "shop", Owner: "clerk"}
	inst.Spec.Extensions = []outpostv1.Extension{"vector"}
	s = DesiredServerSettings(inst)
	if s.Database != "shop" || s.Owner != "clerk" {
		t.Errorf("database %q owner %q, want spec.bootstrap.initdb's shop and clerk", s.Database, s.Owner)
	}
	if got, ok := s.Parameters["shared_preload_libraries"]; ok {
		t.Errorf("shared_preload_libraries = %q without pg_stat_statements, want it unset", got)
	}
	if s.Key() == key {
		t.Error("Key did not change with the extensions")
	}
}
