package v1alpha1

// Kinds of this API group, as objects, manifests and the control database
// name them. Code compares and writes kinds through these, so a typo is a
// compile error rather than a kind that never matches.
const (
	KindPostgresInstance = "PostgresInstance"
	KindBackup           = "Backup"
	KindFeatureStore     = "FeatureStore"
	KindObjectStore      = "ObjectStore"
	KindDataController   = "DataController"
)
