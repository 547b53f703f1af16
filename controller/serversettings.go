package controller

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/postgres"
)

// ServerSettings is what a PostgresInstance's spec asks of its server. Both
// runtimes translate the spec through DesiredServerSettings, so a setting
// added or fixed here reaches local processes and Kubernetes pods alike.
type ServerSettings struct {
	// Database is the application database and Owner the application
	// role that owns it and every database in Databases.
	Database, Owner string
	// Databases are the spec's further databases.
	Databases []string
	// Extensions are created in every application database.
	Extensions []string
	// Parameters are postgresql.conf settings: those derived from memory
	// and CPU, the user's on top, and the libraries the extensions need.
	Parameters map[string]string
}

// Defaults of spec.bootstrap.initdb.
const (
	DefaultDatabase = "app"
	DefaultOwner    = "app"
)

// DesiredServerSettings translates an instance's spec into what its server
// should have.
func DesiredServerSettings(inst *outpostv1.PostgresInstance) ServerSettings {
	s := ServerSettings{Database: DefaultDatabase, Owner: DefaultOwner, Databases: inst.Spec.Databases}
	if b := inst.Spec.Bootstrap.InitDB; b != nil {
		if b.Database != "" {
			s.Database = b.Database
		}
		if b.Owner != "" {
			s.Owner = b.Owner
		}
	}
	s.Extensions = make([]string, len(inst.Spec.Extensions))
	for i, e := range inst.Spec.Extensions {
		s.Extensions[i] = string(e)
	}
	s.Parameters = ResourceParameters(inst)
	for k, v := range inst.Spec.Parameters {
		s.Parameters[k] = v
	}
	// pg_stat_statements can be created without it, but its views then
	// fail on every query. Users cannot set shared_preload_libraries (it
	// loads code), so Outpost's value is the whole list.
	if slices.Contains(s.Extensions, "pg_stat_statements") {
		s.Parameters["shared_preload_libraries"] = "pg_stat_statements"
	}
	return s
}

// ResourceParameters are the settings derived from the spec's memory and
// CPU alone: what a new server starts with, before the user's parameters
// are applied with checks once it runs.
func ResourceParameters(inst *outpostv1.PostgresInstance) map[string]string {
	return postgres.ResourceSettings(inst.Spec.Resources.Memory.Value(), inst.Spec.Resources.CPU.MilliValue())
}

// Key identifies the parameters, databases and extensions, so a runtime
// puts them in place again only when they change.
func (s ServerSettings) Key() string {
	b, _ := json.Marshal(struct {
		P    map[string]string
		E, D []string
	}{s.Parameters, s.Extensions, s.Databases})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
