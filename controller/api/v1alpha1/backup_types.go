package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BackupPhase is where a backup is in its life.
// +kubebuilder:validation:Enum=Pending;Running;Completed;Failed
type BackupPhase string

const (
	BackupPending   BackupPhase = "Pending"
	BackupRunning   BackupPhase = "Running"
	BackupCompleted BackupPhase = "Completed"
	BackupFailed    BackupPhase = "Failed"
)

// BackupType is a full backup or an incremental one on top of the
// instance's newest completed backup.
// +kubebuilder:validation:Enum=full;incremental
type BackupType string

const (
	BackupFull        BackupType = "full"
	BackupIncremental BackupType = "incremental"
)

// BackupSpec names the instance to back up. It cannot change: a different
// backup is a new Backup.
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="a Backup's spec cannot change; create a new Backup"
type BackupSpec struct {
	// Instance is the PostgresInstance to back up; it must have a backup
	// policy.
	Instance LocalObjectReference `json:"instance"`

	// Type is full (the default) or incremental: only the pages that
	// changed since the instance's newest completed backup, full or
	// incremental, which a restore then needs too.
	// +optional
	Type BackupType `json:"type,omitempty"`
}

// BackupVerification records the last check of a completed backup.
type BackupVerification struct {
	// Time of the check.
	Time metav1.Time `json:"time"`

	// ChecksumsOK is true when every object was re-read and matched its
	// checksum in the manifest.
	ChecksumsOK bool `json:"checksumsOK"`

	// Restored is true when the check also restored the backup into a
	// throw-away instance and ran checks there successfully.
	// +optional
	Restored bool `json:"restored,omitempty"`

	// Message explains a failed check.
	// +optional
	Message string `json:"message,omitempty"`
}

// BackupStatus is what happened to the backup.
type BackupStatus struct {
	// ObservedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Phase: Pending, Running, Completed or Failed.
	// +optional
	Phase BackupPhase `json:"phase,omitempty"`

	// Conditions of the backup.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// BackupID is the backup's identifier in the object store.
	// +optional
	BackupID string `json:"backupID,omitempty"`

	// StartedAt is when the backup started.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`

	// StoppedAt is when the backup finished, successfully or not.
	// +optional
	StoppedAt *metav1.Time `json:"stoppedAt,omitempty"`

	// StartLSN is the WAL position where the backup started.
	// +optional
	StartLSN string `json:"startLSN,omitempty"`

	// StopLSN is the WAL position restores must replay up to.
	// +optional
	StopLSN string `json:"stopLSN,omitempty"`

	// Type of the backup made: full or incremental.
	// +optional
	Type BackupType `json:"type,omitempty"`

	// Parent is the backup ID an incremental backup is on top of.
	// +optional
	Parent string `json:"parent,omitempty"`

	// SizeBytes stored in the object store, after compression.
	// +optional
	SizeBytes int64 `json:"sizeBytes,omitempty"`

	// Location of the backup: bucket and key prefix.
	// +optional
	Location string `json:"location,omitempty"`

	// ManifestSHA256 is the checksum of the manifest, which in turn holds
	// the checksum of every object.
	// +optional
	ManifestSHA256 string `json:"manifestSHA256,omitempty"`

	// Encrypted is true when the objects were encrypted on the client.
	// +optional
	Encrypted bool `json:"encrypted,omitempty"`

	// Verification is the result of the last verify.
	// +optional
	Verification *BackupVerification `json:"verification,omitempty"`

	// Error explains a failed backup.
	// +optional
	Error string `json:"error,omitempty"`
}

// Backup is one base backup of one instance, on demand or by schedule.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=outpost
// +kubebuilder:printcolumn:name="Instance",type=string,JSONPath=`.spec.instance.name`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.status.type`
// +kubebuilder:printcolumn:name="Started",type=date,JSONPath=`.status.startedAt`
// +kubebuilder:printcolumn:name="Size",type=integer,JSONPath=`.status.sizeBytes`
// +kubebuilder:printcolumn:name="Verified",type=boolean,JSONPath=`.status.verification.checksumsOK`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Backup struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   BackupSpec   `json:"spec"`
	Status BackupStatus `json:"status,omitempty"`
}

// BackupList is a list of Backups.
//
// +kubebuilder:object:root=true
type BackupList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Backup `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Backup{}, &BackupList{})
}
