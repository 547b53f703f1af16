package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ObjectStoreCredentials says where the access key comes from. Exactly one
// source is set.
// +kubebuilder:validation:XValidation:rule="[has(self.secret), has(self.file), has(self.fromEnvironment) && self.fromEnvironment].filter(x, x).size() == 1",message="set exactly one of secret, file or fromEnvironment"
type ObjectStoreCredentials struct {
	// Secret holds the keys "accessKeyID" and "secretAccessKey".
	// +optional
	Secret *LocalObjectReference `json:"secret,omitempty"`

	// File is a path on a single host to a file with the lines
	// "accessKeyID=..." and "secretAccessKey=...".
	// +kubebuilder:validation:Pattern=`^/`
	// +optional
	File string `json:"file,omitempty"`

	// FromEnvironment reads AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from
	// the controller's environment.
	// +optional
	FromEnvironment bool `json:"fromEnvironment,omitempty"`
}

// ObjectStoreSpec is an S3-compatible bucket shared by many instances.
type ObjectStoreSpec struct {
	// Endpoint URL, for example https://minio.site.local:9000.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (self.startsWith('https://') || self.startsWith('http://'))",message="must be an http or https URL"
	Endpoint string `json:"endpoint"`

	// Bucket name.
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9][a-z0-9.-]*[a-z0-9]$`
	Bucket string `json:"bucket"`

	// Prefix under which every object is written.
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/')",message="must not start with /"
	// +optional
	Prefix string `json:"prefix,omitempty"`

	// Region of the bucket.
	// +kubebuilder:default=us-east-1
	// +optional
	Region string `json:"region,omitempty"`

	// CASecret holds a PEM bundle, under the key "ca.crt", that signs the
	// endpoint's certificate when it is not in the system roots.
	// +optional
	CASecret *LocalObjectReference `json:"caSecret,omitempty"`

	// Credentials to sign requests with.
	Credentials ObjectStoreCredentials `json:"credentials"`

	// CreateBucket creates the bucket when it does not exist; otherwise a
	// missing bucket is reported as an error.
	// +optional
	CreateBucket bool `json:"createBucket,omitempty"`
}

// ObjectStoreStatus is the observed state of the object store.
type ObjectStoreStatus struct {
	// ObservedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready is True when the bucket was reachable and writable
	// at the last check.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ObjectStore is an S3-compatible endpoint and bucket that backups go to.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=os,categories=outpost
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.spec.endpoint`
// +kubebuilder:printcolumn:name="Bucket",type=string,JSONPath=`.spec.bucket`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ObjectStore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ObjectStoreSpec   `json:"spec"`
	Status ObjectStoreStatus `json:"status,omitempty"`
}

// ObjectStoreList is a list of ObjectStores.
//
// +kubebuilder:object:root=true
type ObjectStoreList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ObjectStore `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ObjectStore{}, &ObjectStoreList{})
}
