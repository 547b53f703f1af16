package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Extension is a PostgreSQL extension Outpost allows an instance to create.
// The list is an allowlist: anything else could load arbitrary code into the
// server.
// +kubebuilder:validation:Enum=vector;pg_stat_statements;pgcrypto;pg_trgm;btree_gin;btree_gist;uuid-ossp;hstore;citext
type Extension string

// DeletionPolicy says what happens to an instance's data when the instance is
// deleted.
// +kubebuilder:validation:Enum=Retain;Delete
type DeletionPolicy string

const (
	// DeletionRetain stops the server and keeps its data directory (or PVC).
	DeletionRetain DeletionPolicy = "Retain"
	// DeletionDelete stops the server and removes its data.
	DeletionDelete DeletionPolicy = "Delete"
)

// InstanceResources are the compute resources of the PostgreSQL server. They
// are both the request and the limit, so the server gets a guaranteed share.
type InstanceResources struct {
	// CPU in cores, for example "2" or "500m". It is the limit usage metering
	// bills, in vCores.
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).isGreaterThan(quantity('0'))",message="must be greater than 0"
	CPU resource.Quantity `json:"cpu"`

	// Memory, for example "4Gi". Shared memory settings are derived from it.
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('256Mi')) >= 0",message="must be at least 256Mi"
	Memory resource.Quantity `json:"memory"`
}

// InstanceStorage is the data volume of the instance.
type InstanceStorage struct {
	// Size of the data volume, for example "20Gi". On a single host it is the
	// size metered and checked against free disk.
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('1Gi')) >= 0",message="must be at least 1Gi"
	Size resource.Quantity `json:"size"`

	// StorageClassName for the PVC on Kubernetes; empty means the cluster
	// default. Ignored on a single host.
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty"`
}

// RetentionPolicy keeps backups for a recovery window or by count. The newest
// completed backup is never deleted.
// +kubebuilder:validation:XValidation:rule="has(self.recoveryWindow) != has(self.count)",message="set exactly one of recoveryWindow or count"
type RetentionPolicy struct {
	// RecoveryWindow keeps every backup needed to restore to any time within
	// the window, for example "7d", "36h" or "2w".
	// +kubebuilder:validation:Pattern=`^[1-9][0-9]*[hdw]$`
	// +optional
	RecoveryWindow string `json:"recoveryWindow,omitempty"`

	// Count keeps this many completed backups.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	Count *int32 `json:"count,omitempty"`
}

// BackupEncryption encrypts backups on the client with age (X25519) before
// they leave the host.
type BackupEncryption struct {
	// KeySecret holds the age identity ("AGE-SECRET-KEY-1...") under the key
	// "age.key". Backups are encrypted to its recipient; restores decrypt
	// with it.
	KeySecret LocalObjectReference `json:"keySecret"`
}

// BackupPolicy says where, when and how long an instance is backed up.
type BackupPolicy struct {
	// ObjectStore names the ObjectStore that receives base backups and WAL.
	ObjectStore LocalObjectReference `json:"objectStore"`

	// Schedule of base backups as a cron expression: 5 fields as people write
	// them ("0 3 * * *"), 6 with seconds, or a descriptor such as "@daily".
	// Empty means on demand only; WAL is archived either way.
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.matches('^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|@every [0-9][0-9a-z.]*|[^ ]+( +[^ ]+){4,5})$')",message="must be a cron expression of 5 or 6 fields, or a descriptor such as @daily"
	// +optional
	Schedule string `json:"schedule,omitempty"`

	// IncrementalSchedule of incremental backups, as a cron expression like
	// schedule: each stores only the pages changed since the newest
	// completed backup, so a weekly full schedule and a daily incremental
	// one keep a week of restores for little more than one full backup.
	// When both are due at once, the full backup is made. Empty means
	// none.
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.matches('^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|@every [0-9][0-9a-z.]*|[^ ]+( +[^ ]+){4,5})$')",message="must be a cron expression of 5 or 6 fields, or a descriptor such as @daily"
	// +optional
	IncrementalSchedule string `json:"incrementalSchedule,omitempty"`

	// Retention of base backups and the WAL they need.
	// +kubebuilder:default={recoveryWindow: "7d"}
	// +optional
	Retention RetentionPolicy `json:"retention,omitzero"`

	// Encryption, when set, encrypts every object on the client.
	// +optional
	Encryption *BackupEncryption `json:"encryption,omitempty"`

	// Verification, when set, proves on a schedule that the newest backup
	// restores; the result is in status.lastVerification and the
	// BackupVerified condition.
	// +optional
	Verification *VerificationPolicy `json:"verification,omitempty"`
}

// VerificationPolicy schedules restore tests of an instance's newest
// backup.
type VerificationPolicy struct {
	// Schedule of verifications as a cron expression, like
	// spec.backup.schedule.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.matches('^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|@every [0-9][0-9a-z.]*|[^ ]+( +[^ ]+){4,5})$')",message="must be a cron expression of 5 or 6 fields, or a descriptor such as @daily"
	Schedule string `json:"schedule"`

	// Restore, true by default, restores the backup into a throw-away
	// instance, checks every B-tree index with amcheck and counts the rows
	// of every table. False only re-reads the backup's objects against
	// their checksums and checks that the archived WAL is continuous.
	// +kubebuilder:default=true
	// +optional
	Restore *bool `json:"restore,omitempty"`
}

// InitDBBootstrap creates an empty cluster.
type InitDBBootstrap struct {
	// Database created for the application.
	// +kubebuilder:default=app
	// +kubebuilder:validation:Pattern=`^[a-z_][a-z0-9_]{0,62}$`
	// +optional
	Database string `json:"database,omitempty"`

	// Owner is the application role that owns Database.
	// +kubebuilder:default=app
	// +kubebuilder:validation:Pattern=`^[a-z_][a-z0-9_]{0,62}$`
	// +kubebuilder:validation:XValidation:rule="self != 'postgres'",message="must not be the superuser postgres"
	// +optional
	Owner string `json:"owner,omitempty"`
}

// RecoveryBootstrap creates the instance from another instance's backups.
type RecoveryBootstrap struct {
	// Source is the name of the instance whose backups are restored. It need
	// not exist any more. Like every object name it is a DNS-1123 subdomain;
	// it becomes part of object store keys.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Source string `json:"source"`

	// ObjectStore holds the source's backups.
	ObjectStore LocalObjectReference `json:"objectStore"`

	// BackupID restores this base backup; empty picks the newest one that
	// ends before TargetTime. It becomes part of object store keys, so it
	// is one plain path component.
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9._-]*$`
	// +optional
	BackupID string `json:"backupID,omitempty"`

	// TargetTime recovers to this point in time; empty replays all archived
	// WAL.
	// +optional
	TargetTime *metav1.Time `json:"targetTime,omitempty"`
}

// Bootstrap says how the instance's data directory comes to be. It cannot
// change after creation.
// +kubebuilder:validation:XValidation:rule="!(has(self.initdb) && has(self.recovery))",message="set at most one of initdb or recovery"
type Bootstrap struct {
	// InitDB creates an empty cluster. It is the default.
	// +optional
	InitDB *InitDBBootstrap `json:"initdb,omitempty"`

	// Recovery restores a backup, optionally to a target time.
	// +optional
	Recovery *RecoveryBootstrap `json:"recovery,omitempty"`
}

// PostgresInstanceSpec is the desired state of one PostgreSQL server.
type PostgresInstanceSpec struct {
	// Version is the PostgreSQL major version.
	// +kubebuilder:validation:Enum=15
	// +kubebuilder:default=15
	// +optional
	Version int32 `json:"version,omitempty"`

	// Resources of the server; CPU is what usage metering bills.
	Resources InstanceResources `json:"resources"`

	// Storage of the data directory.
	Storage InstanceStorage `json:"storage"`

	// Parameters are postgresql.conf settings. Outpost manages the listen
	// address, port, paths, WAL archiving and restore, wal_level and ssl
	// itself and refuses them here, as it refuses every setting that loads
	// code (preload libraries, library paths), makes the server read or write
	// files outside its data directory (the log collector, pid and key
	// files), includes files or runs shell commands. The policy and its
	// review of PostgreSQL 15's settings are in postgres/config.go, whose
	// lists these rules repeat. Names are case-insensitive.
	// +kubebuilder:validation:MaxProperties=200
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k.lowerAscii() in ['listen_addresses', 'port', 'unix_socket_directories', 'data_directory', 'config_file', 'hba_file', 'ident_file', 'archive_mode', 'archive_command', 'archive_library', 'restore_command', 'recovery_target_time', 'wal_level', 'ssl', 'ssl_cert_file', 'ssl_key_file']))",messageExpression="'spec.parameters.' + self.filter(k, k.lowerAscii() in ['listen_addresses', 'port', 'unix_socket_directories', 'data_directory', 'config_file', 'hba_file', 'ident_file', 'archive_mode', 'archive_command', 'archive_library', 'restore_command', 'recovery_target_time', 'wal_level', 'ssl', 'ssl_cert_file', 'ssl_key_file'])[0] + ' is managed by Outpost (listen address, port, paths, WAL archiving and restore, wal_level, ssl) and cannot be set'"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k.lowerAscii() in ['shared_preload_libraries', 'local_preload_libraries', 'session_preload_libraries', 'dynamic_library_path', 'jit_provider']))",messageExpression="'spec.parameters.' + self.filter(k, k.lowerAscii() in ['shared_preload_libraries', 'local_preload_libraries', 'session_preload_libraries', 'dynamic_library_path', 'jit_provider'])[0] + ' loads code into the server and cannot be set; extensions come only through spec.extensions'"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k.lowerAscii() in ['logging_collector', 'log_directory', 'log_filename', 'log_file_mode', 'external_pid_file', 'unix_socket_group', 'unix_socket_permissions', 'ssl_ca_file', 'ssl_crl_file', 'ssl_crl_dir', 'ssl_dh_params_file', 'krb_server_keyfile', 'promote_trigger_file', 'primary_conninfo']))",messageExpression="'spec.parameters.' + self.filter(k, k.lowerAscii() in ['logging_collector', 'log_directory', 'log_filename', 'log_file_mode', 'external_pid_file', 'unix_socket_group', 'unix_socket_permissions', 'ssl_ca_file', 'ssl_crl_file', 'ssl_crl_dir', 'ssl_dh_params_file', 'krb_server_keyfile', 'promote_trigger_file', 'primary_conninfo'])[0] + ' makes the server read or write files outside its data directory and cannot be set'"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k.lowerAscii() in ['include', 'include_dir', 'include_if_exists']))",messageExpression="'spec.parameters.' + self.filter(k, k.lowerAscii() in ['include', 'include_dir', 'include_if_exists'])[0] + ' is a configuration file directive that includes files and cannot be set'"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k.lowerAscii() in ['archive_cleanup_command', 'recovery_end_command', 'ssl_passphrase_command']))",messageExpression="'spec.parameters.' + self.filter(k, k.lowerAscii() in ['archive_cleanup_command', 'recovery_end_command', 'ssl_passphrase_command'])[0] + ' runs a shell command on the host and cannot be set'"
	// +optional
	Parameters map[string]string `json:"parameters,omitempty"`

	// Extensions created in every application database.
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Extensions []Extension `json:"extensions,omitempty"`

	// Databases created besides the bootstrap database, owned by the
	// application role; for example one per feature store.
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Pattern=`^[a-z_][a-z0-9_]{0,62}$`
	// +optional
	Databases []string `json:"databases,omitempty"`

	// Backup policy; without it the instance is not backed up.
	// +optional
	Backup *BackupPolicy `json:"backup,omitempty"`

	// Bootstrap says how the data directory is created.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="bootstrap cannot change after creation"
	// +kubebuilder:default={initdb: {}}
	// +optional
	Bootstrap Bootstrap `json:"bootstrap,omitzero"`

	// DeletionPolicy says whether deleting the instance keeps its data
	// (Retain, the default) or removes it (Delete).
	// +kubebuilder:default=Retain
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
}

// InstancePhase is a short summary of where the instance is in its life.
// +kubebuilder:validation:Enum=Pending;Provisioning;Running;Failed;Deleting
type InstancePhase string

const (
	InstancePending      InstancePhase = "Pending"
	InstanceProvisioning InstancePhase = "Provisioning"
	InstanceRunning      InstancePhase = "Running"
	InstanceFailed       InstancePhase = "Failed"
	InstanceDeleting     InstancePhase = "Deleting"
)

// PostgresInstanceStatus is the observed state of the server.
type PostgresInstanceStatus struct {
	// ObservedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Phase summarises the conditions.
	// +optional
	Phase InstancePhase `json:"phase,omitempty"`

	// Conditions: Ready; with spec.backup also WALArchiving (is WAL reaching
	// the object store, and are Outpost's archive settings in effect) and,
	// with spec.backup.verification, BackupVerified.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Endpoint is host:port where clients connect.
	// +optional
	Endpoint string `json:"endpoint,omitempty"`

	// CredentialsSecret holds the application role's credentials (username,
	// password, uri).
	// +optional
	CredentialsSecret *LocalObjectReference `json:"credentialsSecret,omitempty"`

	// PgvectorVersion is the installed pgvector version, reported because
	// versions before 0.8.2 build HNSW indexes serially (CVE-2026-3172).
	// +optional
	PgvectorVersion string `json:"pgvectorVersion,omitempty"`

	// Restarts counts how often the supervisor restarted a postgres that died.
	// +optional
	Restarts int32 `json:"restarts,omitempty"`

	// LastBackup names the newest completed Backup.
	// +optional
	LastBackup string `json:"lastBackup,omitempty"`

	// LastBackupTime is when the newest completed backup finished.
	// +optional
	LastBackupTime *metav1.Time `json:"lastBackupTime,omitempty"`

	// FirstRecoverabilityPoint is the earliest time a restore can target.
	// +optional
	FirstRecoverabilityPoint *metav1.Time `json:"firstRecoverabilityPoint,omitempty"`

	// Bootstrapped is set once the instance has served for the first time:
	// its data directory exists, by initdb or by spec.bootstrap.recovery.
	// It is never unset. A restored instance's pods lose the age identity
	// from then on, which only the restore needed.
	// +optional
	Bootstrapped bool `json:"bootstrapped,omitempty"`

	// LastVerification is what the newest scheduled verification of the
	// backups found.
	// +optional
	LastVerification *VerificationStatus `json:"lastVerification,omitempty"`

	// Backups records which slots of the backup and verification schedules
	// have been taken, so that a controller restart neither runs a slot
	// again nor skips one.
	// +optional
	Backups *BackupScheduleStatus `json:"backups,omitempty"`
}

// BackupScheduleStatus holds, per schedule, the slot it last acted on: the
// time the cron expression named, not when the controller got to it. A
// scheduled Backup is named after its slot, so the slot alone says which
// Backup it made. The controller keeps nothing else of a schedule: on
// every pass it acts on the newest slot due after these times.
type BackupScheduleStatus struct {
	// LastScheduleTime is the slot of spec.backup.schedule (full backups)
	// last taken.
	// +optional
	LastScheduleTime *metav1.Time `json:"lastScheduleTime,omitempty"`

	// LastIncrementalScheduleTime is the slot of
	// spec.backup.incrementalSchedule last taken.
	// +optional
	LastIncrementalScheduleTime *metav1.Time `json:"lastIncrementalScheduleTime,omitempty"`

	// LastVerificationScheduleTime is the slot of
	// spec.backup.verification.schedule last started.
	// +optional
	LastVerificationScheduleTime *metav1.Time `json:"lastVerificationScheduleTime,omitempty"`
}

// Condition types of a PostgresInstance besides Ready.
const (
	// ConditionWALArchiving is True while WAL reaches the object store and
	// Outpost's archive settings are in effect.
	ConditionWALArchiving = "WALArchiving"
	// ConditionBackupVerified is True while the newest scheduled
	// verification passed and is not overdue.
	ConditionBackupVerified = "BackupVerified"
)

// VerificationResult is the outcome of one verification.
// +kubebuilder:validation:Enum=Passed;Failed
type VerificationResult string

const (
	VerificationPassed VerificationResult = "Passed"
	VerificationFailed VerificationResult = "Failed"
)

// VerificationStatus is one verification of an instance's newest
// backup.
type VerificationStatus struct {
	// Time the verification started.
	Time metav1.Time `json:"time"`

	// Backup is the ID of the backup verified; empty when none was found.
	// +optional
	Backup string `json:"backup,omitempty"`

	// Result is Passed or Failed.
	Result VerificationResult `json:"result"`

	// Restored says whether the backup was restored (spec.backup.verification.restore).
	// +optional
	Restored bool `json:"restored,omitempty"`

	// RecoveredTo is the newest point the restore reached: the end of the
	// archived WAL it replayed.
	// +optional
	RecoveredTo *metav1.Time `json:"recoveredTo,omitempty"`

	// Duration of the whole verification.
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`

	// Message says what was checked, or what failed.
	// +optional
	Message string `json:"message,omitempty"`
}

// PostgresInstance is one PostgreSQL server with pgvector.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=pgi,categories=outpost
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.status.endpoint`
// +kubebuilder:printcolumn:name="CPU",type=string,JSONPath=`.spec.resources.cpu`
// +kubebuilder:printcolumn:name="Archiving",type=string,JSONPath=`.status.conditions[?(@.type=="WALArchiving")].reason`
// +kubebuilder:printcolumn:name="Verified",type=string,JSONPath=`.status.conditions[?(@.type=="BackupVerified")].reason`
// +kubebuilder:printcolumn:name="Last Backup",type=date,JSONPath=`.status.lastBackupTime`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PostgresInstance struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   PostgresInstanceSpec   `json:"spec"`
	Status PostgresInstanceStatus `json:"status,omitempty"`
}

// PostgresInstanceList is a list of PostgresInstances.
//
// +kubebuilder:object:root=true
type PostgresInstanceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PostgresInstance `json:"items"`
}

func init() {
	SchemeBuilder.Register(&PostgresInstance{}, &PostgresInstanceList{})
}
