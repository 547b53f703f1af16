package v1alpha1

// LocalObjectReference names another object in the same namespace.
type LocalObjectReference struct {
	// Name of the referenced object: a DNS-1123 subdomain, as Kubernetes
	// object names are. On a single host names become path components
	// (secrets/NAMESPACE/NAME/...), so the pattern also keeps "..", "/" and
	// the like out of paths.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// SecretKeySelector names one key of a Secret in the same namespace.
type SecretKeySelector struct {
	// Name of the Secret: a DNS-1123 subdomain.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// Key within the Secret's data, as Kubernetes allows Secret keys. On a
	// single host it is a file name, so "." and ".." are refused.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +kubebuilder:validation:XValidation:rule="self != '.' && self != '..'",message="must not be . or .."
	Key string `json:"key"`
}

// Condition types shared by the Outpost resources.
const (
	// ConditionReady is True when the resource does what its spec asks.
	ConditionReady = "Ready"
)
