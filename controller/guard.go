package controller

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/resource"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/postgres"
)

// checkInstanceSpec re-checks what reconcile relies on, so that a spec that
// slipped past admission (an old CRD, a hand-edited object) still cannot do
// harm. Admission normally rejects all of these first.
func checkInstanceSpec(spec *outpostv1.PostgresInstanceSpec) error {
	if spec.Resources.CPU.Cmp(resource.Quantity{}) <= 0 {
		return fmt.Errorf("spec.resources.cpu: must be greater than 0, got %q", spec.Resources.CPU.String())
	}
	if spec.Resources.Memory.Cmp(resource.MustParse("256Mi")) < 0 {
		return fmt.Errorf("spec.resources.memory: must be at least 256Mi, got %q", spec.Resources.Memory.String())
	}
	exts := make([]string, len(spec.Extensions))
	for i, e := range spec.Extensions {
		exts[i] = string(e)
	}
	if err := postgres.CheckExtensions(exts); err != nil {
		return fmt.Errorf("spec.extensions: %w", err)
	}
	if err := postgres.CheckParameters(spec.Parameters); err != nil {
		return fmt.Errorf("spec.parameters: %w", err)
	}
	if spec.Version != 0 && spec.Version != postgres.DefaultMajorVersion {
		return fmt.Errorf("spec.version: PostgreSQL %d is not installed; this controller runs %d", spec.Version, postgres.DefaultMajorVersion)
	}
	if r := spec.Bootstrap.Recovery; r != nil && (r.Source == "" || r.ObjectStore.Name == "") {
		return fmt.Errorf("spec.bootstrap.recovery: source and objectStore.name are required")
	}
	if err := checkBackupSpec(spec); err != nil {
		return err
	}
	return nil
}
