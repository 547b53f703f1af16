package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ConnectivityMode says how usage leaves the site.
// +kubebuilder:validation:Enum=indirect;direct
type ConnectivityMode string

const (
	// ConnectivityIndirect: an operator exports signed monthly files and
	// uploads them later from a connected machine.
	ConnectivityIndirect ConnectivityMode = "indirect"
	// ConnectivityDirect: the controller streams usage to the hub as it
	// happens, over outbound HTTPS.
	ConnectivityDirect ConnectivityMode = "direct"
)

// Site identifies where this controller runs; it is written into every usage
// record and export file.
type Site struct {
	// Name of the site, unique among the sites that report to one hub.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// Labels describe the site for billing and reporting, for example
	// costCentre and region. They are copied into usage records.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	Labels map[string]string `json:"labels,omitempty"`
}

// Hub is the central service that receives usage in direct mode.
type Hub struct {
	// URL of the hub, for example https://hub.example.com.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (self.startsWith('https://') || self.startsWith('http://'))",message="must be an http or https URL"
	URL string `json:"url"`

	// CredentialsSecret holds the site's hub token under the key "token".
	// +optional
	CredentialsSecret *LocalObjectReference `json:"credentialsSecret,omitempty"`

	// CASecret holds a PEM bundle, under the key "ca.crt", that signs the
	// hub's certificate when it is not in the system roots; only that
	// bundle is trusted then. On a single host the bundle is the file
	// secrets/NAMESPACE/NAME/ca.crt in the state directory, as for an
	// ObjectStore's caSecret.
	// +optional
	CASecret *LocalObjectReference `json:"caSecret,omitempty"`

	// AllowInsecureHub lets a direct-mode site stream to an http:// hub,
	// which sends the site's token and usage in clear. Only for a hub on
	// the same host or behind a TLS-terminating proxy on a trusted
	// network.
	// +optional
	AllowInsecureHub bool `json:"allowInsecureHub,omitempty"`
}

// Connectivity says whether and how the site reaches its hub.
// +kubebuilder:validation:XValidation:rule="self.mode != 'direct' || has(self.hub)",message="hub is required when mode is direct",fieldPath=".hub"
// +kubebuilder:validation:XValidation:rule="self.mode != 'direct' || !has(self.hub) || !self.hub.url.startsWith('http://') || (has(self.hub.allowInsecureHub) && self.hub.allowInsecureHub)",message="an http:// hub receives the site's token and usage in clear: use https://, or set allowInsecureHub: true",fieldPath=".hub.url"
type Connectivity struct {
	// Mode is indirect (signed monthly export files, uploaded by an
	// operator) or direct (usage streamed to the hub as it happens).
	// +kubebuilder:default=indirect
	// +optional
	Mode ConnectivityMode `json:"mode,omitempty"`

	// Hub receives usage in direct mode; in indirect mode it is the default
	// target of `outpost usage upload`.
	// +optional
	Hub *Hub `json:"hub,omitempty"`
}

// Metering sets how usage is sampled and when the site counts as late.
// +kubebuilder:validation:XValidation:rule="!has(self.warnAfter) || !has(self.overdueAfter) || duration(self.warnAfter) < duration(self.overdueAfter)",message="warnAfter must be shorter than overdueAfter",fieldPath=".warnAfter"
type Metering struct {
	// Interval between usage samples. A controller that was down catches up
	// on its next sample, so this bounds staleness, not accuracy.
	// +kubebuilder:default="1m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(s|m|h))+$`
	// +optional
	Interval metav1.Duration `json:"interval,omitzero"`

	// WarnAfter is how long the site may go without an export (indirect)
	// or without reaching the hub (direct) before its freshness condition
	// turns False with reason Stale, a warning.
	// +kubebuilder:default="48h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(s|m|h))+$`
	// +optional
	WarnAfter metav1.Duration `json:"warnAfter,omitzero"`

	// OverdueAfter is how long the site may go without an export (indirect)
	// or without reaching the hub (direct) before it reports itself overdue.
	// +kubebuilder:default="720h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(s|m|h))+$`
	// +optional
	OverdueAfter metav1.Duration `json:"overdueAfter,omitzero"`
}

// LocalRuntime configures instances that run as processes on this host (the
// single-host runtime).
type LocalRuntime struct {
	// ListenAddress is the address every local instance listens on.
	// 127.0.0.1, the default, admits clients on this host only; another
	// address of this host, or 0.0.0.0 for all of them, admits clients from
	// the site's network too, always with password (SCRAM) authentication.
	// +kubebuilder:default="127.0.0.1"
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IP address, such as 127.0.0.1 or 0.0.0.0"
	// +optional
	ListenAddress string `json:"listenAddress,omitempty"`
}

// DataControllerSpec is the desired state of one site's data controller.
type DataControllerSpec struct {
	// Site identifies this site in usage records and export files.
	Site Site `json:"site"`

	// Connectivity says how usage leaves the site.
	// +kubebuilder:default={mode: indirect}
	// +optional
	Connectivity Connectivity `json:"connectivity,omitzero"`

	// Metering sets the sampling interval and the warning and overdue
	// thresholds.
	// +kubebuilder:default={}
	// +optional
	Metering Metering `json:"metering,omitzero"`

	// LocalRuntime configures instances run as local processes; Kubernetes
	// ignores it.
	// +kubebuilder:default={}
	// +optional
	LocalRuntime LocalRuntime `json:"localRuntime,omitzero"`
}

// DataControllerStatus is the observed state of the data controller.
type DataControllerStatus struct {
	// ObservedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, UsageExported (indirect) and UsageUploaded.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// SigningKeyFingerprint is the SHA-256 fingerprint of the site's ed25519
	// public key that signs usage exports.
	// +optional
	SigningKeyFingerprint string `json:"signingKeyFingerprint,omitempty"`

	// LastExportTime is when the last usage export file was written.
	// +optional
	LastExportTime *metav1.Time `json:"lastExportTime,omitempty"`

	// LastUploadTime is when usage last reached the hub, by upload or stream.
	// +optional
	LastUploadTime *metav1.Time `json:"lastUploadTime,omitempty"`

	// Backlog is the number of usage records the hub has not acknowledged
	// yet, set-aside ones included (direct mode).
	// +optional
	Backlog int64 `json:"backlog,omitempty"`
}

// DataController is the one per-site controller: site identity, connectivity
// to the hub and metering.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=dc,categories=outpost
// +kubebuilder:printcolumn:name="Site",type=string,JSONPath=`.spec.site.name`
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.connectivity.mode`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Last Export",type=date,JSONPath=`.status.lastExportTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type DataController struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   DataControllerSpec   `json:"spec"`
	Status DataControllerStatus `json:"status,omitempty"`
}

// DataControllerList is a list of DataControllers.
//
// +kubebuilder:object:root=true
type DataControllerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DataController `json:"items"`
}

func init() {
	SchemeBuilder.Register(&DataController{}, &DataControllerList{})
}
