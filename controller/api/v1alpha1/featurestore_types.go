package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// VectorType is the pgvector column type of the embeddings.
// +kubebuilder:validation:Enum=vector;halfvec
type VectorType string

// Distance is the metric nearest-neighbour search orders by.
// +kubebuilder:validation:Enum=cosine;l2;inner_product
type Distance string

// IndexType is the approximate nearest-neighbour index on the embeddings.
// +kubebuilder:validation:Enum=hnsw;ivfflat;none
type IndexType string

// FeatureType is the SQL type of a feature column.
// +kubebuilder:validation:Enum=text;bigint;double;boolean;timestamptz;jsonb
type FeatureType string

// HNSWParameters tune an HNSW index.
type HNSWParameters struct {
	// M is the number of connections per layer.
	// +kubebuilder:validation:Minimum=2
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=16
	// +optional
	M int32 `json:"m,omitempty"`

	// EfConstruction is the candidate list size while building.
	// +kubebuilder:validation:Minimum=4
	// +kubebuilder:validation:Maximum=1000
	// +kubebuilder:default=64
	// +optional
	EfConstruction int32 `json:"efConstruction,omitempty"`
}

// IVFFlatParameters tune an IVFFlat index.
type IVFFlatParameters struct {
	// Lists is the number of inverted lists; rows/1000 up to a million rows,
	// sqrt(rows) beyond.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=32768
	// +kubebuilder:default=100
	// +optional
	Lists int32 `json:"lists,omitempty"`
}

// VectorIndex is the index on the embedding column.
// +kubebuilder:validation:XValidation:rule="!has(self.hnsw) || self.type == 'hnsw'",message="hnsw parameters need type hnsw",fieldPath=".hnsw"
// +kubebuilder:validation:XValidation:rule="!has(self.ivfflat) || self.type == 'ivfflat'",message="ivfflat parameters need type ivfflat",fieldPath=".ivfflat"
type VectorIndex struct {
	// Type of index: hnsw (best recall/latency, slower build), ivfflat
	// (faster build, needs data before it is built) or none (exact search).
	// +kubebuilder:default=hnsw
	// +optional
	Type IndexType `json:"type,omitempty"`

	// HNSW parameters, used when type is hnsw.
	// +optional
	HNSW *HNSWParameters `json:"hnsw,omitempty"`

	// IVFFlat parameters, used when type is ivfflat.
	// +optional
	IVFFlat *IVFFlatParameters `json:"ivfflat,omitempty"`
}

// Feature is one typed column of the feature store.
// +kubebuilder:validation:XValidation:rule="!(has(self.indexed) && self.indexed && self.type == 'jsonb')",message="a jsonb feature cannot have a B-tree index; index it with SQL (GIN) instead",fieldPath=".indexed"
type Feature struct {
	// Name of the column.
	// +kubebuilder:validation:Pattern=`^[a-z_][a-z0-9_]{0,62}$`
	// +kubebuilder:validation:XValidation:rule="!(self in ['key', 'embedding', 'event_time', 'updated_at', 'valid_from', 'valid_to'])",message="is a column name the feature store uses itself"
	Name string `json:"name"`

	// Type of the column.
	Type FeatureType `json:"type"`

	// Indexed puts a B-tree index on the column, so that a search filtered
	// on it can read a selective filter's rows from the index and rank them
	// exactly instead of walking the vector index. Not for jsonb.
	// +optional
	Indexed bool `json:"indexed,omitempty"`
}

// HistoryPolicy keeps past versions of every entity for point-in-time
// lookups.
type HistoryPolicy struct {
	// Retention is how long past versions are kept, for example "90d"; "0d"
	// keeps no history.
	// +kubebuilder:validation:Pattern=`^[0-9]+[hdw]$`
	// +kubebuilder:default="30d"
	// +optional
	Retention string `json:"retention,omitempty"`
}

// FeatureStoreSpec is the desired shape of a feature store.
// +kubebuilder:validation:XValidation:rule="self.index.type == 'none' || self.dimensions <= 4000",message="an index supports at most 4000 dimensions; use index type none above that",fieldPath=".dimensions"
type FeatureStoreSpec struct {
	// Instance is the PostgresInstance that holds the store.
	Instance LocalObjectReference `json:"instance"`

	// Database within the instance.
	// +kubebuilder:validation:Pattern=`^[a-z_][a-z0-9_]{0,62}$`
	Database string `json:"database"`

	// Dimensions of every embedding. It cannot change: a new dimension means
	// a new store.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=16000
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="dimensions cannot change; create a new feature store instead"
	Dimensions int32 `json:"dimensions"`

	// VectorType of the embedding column: vector (float32) or halfvec
	// (float16, half the space).
	// +kubebuilder:default=vector
	// +optional
	VectorType VectorType `json:"vectorType,omitempty"`

	// Distance search orders by.
	// +kubebuilder:default=cosine
	// +optional
	Distance Distance `json:"distance,omitempty"`

	// Index on the embeddings.
	// +kubebuilder:default={type: hnsw}
	// +optional
	Index VectorIndex `json:"index,omitzero"`

	// Features are the typed columns stored beside each embedding.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=256
	// +optional
	Features []Feature `json:"features,omitempty"`

	// History of past versions.
	// +kubebuilder:default={}
	// +optional
	History HistoryPolicy `json:"history,omitzero"`

	// DeletionPolicy says what deleting the FeatureStore does to its data:
	// Retain (the default) leaves the tables in the database, readable and
	// ready for a FeatureStore of the same name to take them up again;
	// Delete drops the latest and past tables and the history view.
	// +kubebuilder:default=Retain
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
}

// FeatureStorePhase summarises a feature store's conditions.
type FeatureStorePhase string

// Phases of a feature store.
const (
	FeatureStorePending FeatureStorePhase = "Pending"
	FeatureStoreReady   FeatureStorePhase = "Ready"
	FeatureStoreFailed  FeatureStorePhase = "Failed"
)

// FeatureStoreStatus is the observed state of a feature store.
type FeatureStoreStatus struct {
	// ObservedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Phase summarises the conditions: Pending, Ready or Failed.
	// +optional
	Phase FeatureStorePhase `json:"phase,omitempty"`

	// Conditions: Ready, IndexReady.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Table is the schema-qualified name of the latest-values table.
	// +optional
	Table string `json:"table,omitempty"`

	// Rows in the latest-values table at the last reconcile.
	// +optional
	Rows int64 `json:"rows,omitempty"`

	// IndexState is none, absent, building, invalid or valid.
	// +optional
	IndexState string `json:"indexState,omitempty"`

	// IndexBuild is the progress of an index build under way, such as the
	// CONCURRENTLY rebuild after the index parameters changed; absent when
	// no build runs.
	// +optional
	IndexBuild *IndexBuildProgress `json:"indexBuild,omitempty"`

	// PgvectorVersion installed in the database.
	// +optional
	PgvectorVersion string `json:"pgvectorVersion,omitempty"`
}

// IndexBuildProgress is a reading of pg_stat_progress_create_index.
type IndexBuildProgress struct {
	// Index being built.
	Index string `json:"index"`

	// Phase as PostgreSQL names it, for example "building index: loading
	// tuples in tree" or "waiting for writers before build".
	Phase string `json:"phase"`

	// PercentDone of the phase's blocks or tuples, when PostgreSQL counts
	// them.
	// +optional
	PercentDone int32 `json:"percentDone,omitempty"`

	// Concurrently is true for a build beside a live index (reads and
	// ingests go on).
	// +optional
	Concurrently bool `json:"concurrently,omitempty"`

	// Serial is true for an HNSW build without parallel workers, as while
	// pgvector is older than 0.8.2 (CVE-2026-3172).
	// +optional
	Serial bool `json:"serial,omitempty"`
}

// FeatureStore is a table of entities with embeddings and typed features,
// queryable from any SQL client.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=fs,categories=outpost
// +kubebuilder:printcolumn:name="Instance",type=string,JSONPath=`.spec.instance.name`
// +kubebuilder:printcolumn:name="Dims",type=integer,JSONPath=`.spec.dimensions`
// +kubebuilder:printcolumn:name="Index",type=string,JSONPath=`.spec.index.type`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Rows",type=integer,JSONPath=`.status.rows`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type FeatureStore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   FeatureStoreSpec   `json:"spec"`
	Status FeatureStoreStatus `json:"status,omitempty"`
}

// FeatureStoreList is a list of FeatureStores.
//
// +kubebuilder:object:root=true
type FeatureStoreList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []FeatureStore `json:"items"`
}

func init() {
	SchemeBuilder.Register(&FeatureStore{}, &FeatureStoreList{})
}
