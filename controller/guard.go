package controller

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

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
		var pe *postgres.ParameterError
		if errors.As(err, &pe) {
			return fmt.Errorf("spec.parameters.%s: %w", pe.Name, err)
		}
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
	return checkInstanceReferences(spec)
}

// checkInstanceReferences refuses reference names that are not DNS-1123
// subdomains, as the CRD does: on a single host they become path
// components, and on any runtime parts of object store keys.
func checkInstanceReferences(spec *outpostv1.PostgresInstanceSpec) error {
	refs := map[string]string{}
	if b := spec.Backup; b != nil {
		refs["spec.backup.objectStore.name"] = b.ObjectStore.Name
		if b.Encryption != nil {
			refs["spec.backup.encryption.keySecret.name"] = b.Encryption.KeySecret.Name
		}
	}
	if r := spec.Bootstrap.Recovery; r != nil {
		refs["spec.bootstrap.recovery.source"] = r.Source
		refs["spec.bootstrap.recovery.objectStore.name"] = r.ObjectStore.Name
	}
	for _, field := range slices.Sorted(maps.Keys(refs)) {
		if err := checkReferenceName(field, refs[field]); err != nil {
			return err
		}
	}
	if r := spec.Bootstrap.Recovery; r != nil && r.BackupID != "" && !backupID.MatchString(r.BackupID) {
		return fmt.Errorf("spec.bootstrap.recovery.backupID: %q is not a backup ID (letters, digits, '.', '_' and '-', not starting with '.')", r.BackupID)
	}
	return nil
}

// backupID is the CRD's pattern for spec.bootstrap.recovery.backupID.
var backupID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// checkReferenceName refuses a name that is not a DNS-1123 subdomain,
// naming the field.
func checkReferenceName(field, name string) error {
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return fmt.Errorf("%s: %q is not a valid object name: %s", field, name, strings.Join(msgs, "; "))
	}
	return nil
}
