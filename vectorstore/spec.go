package vectorstore

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// VectorType is the pgvector type of the embedding column.
type VectorType string

// Vector types.
const (
	Vector  VectorType = "vector"
	HalfVec VectorType = "halfvec"
)

// Distance is the metric search orders by.
type Distance string

// Distances.
const (
	Cosine       Distance = "cosine"
	L2           Distance = "l2"
	InnerProduct Distance = "inner_product"
)

// IndexType is the approximate nearest-neighbour index on the embeddings.
type IndexType string

// Index types.
const (
	HNSW    IndexType = "hnsw"
	IVFFlat IndexType = "ivfflat"
	NoIndex IndexType = "none"
)

// FeatureType is the SQL type of a feature column.
type FeatureType string

// Feature types.
const (
	Text        FeatureType = "text"
	BigInt      FeatureType = "bigint"
	Double      FeatureType = "double"
	Boolean     FeatureType = "boolean"
	Timestamptz FeatureType = "timestamptz"
	JSONB       FeatureType = "jsonb"
)

// sqlType is the column type a feature type is stored as.
func (t FeatureType) sqlType() string {
	switch t {
	case Double:
		return "double precision"
	default:
		return string(t)
	}
}

// Feature is one typed column beside the embedding.
type Feature struct {
	Name string
	Type FeatureType
	// Indexed puts a B-tree index on the feature in the latest table. A
	// search filtered on it is then planned by PostgreSQL: a selective
	// filter (say 1% of rows) reads the matching rows from the B-tree and
	// ranks them exactly, which is much faster than walking the vector
	// index until enough matches turn up; a broad filter still uses the
	// vector index. Each index costs some ingest speed. Not for jsonb.
	Indexed bool `json:",omitempty"`
}

// Index describes the index on the embedding column.
type Index struct {
	Type IndexType
	// M and EfConstruction tune HNSW; zero means pgvector's defaults
	// (16 and 64).
	M, EfConstruction int
	// Lists tunes IVFFlat; zero means 100.
	Lists int
}

// Spec is the desired shape of one feature store.
type Spec struct {
	// Name of the store; its latest-values table has this name (with - and
	// . turned into _) in the public schema, so plain SQL reads it.
	Name       string
	Dimensions int
	// VectorType defaults to vector.
	VectorType VectorType
	// Distance defaults to cosine.
	Distance Distance
	// Index defaults to HNSW.
	Index    Index
	Features []Feature
	// Retention is how long superseded versions stay in history; zero
	// means DefaultRetention, and a negative value (NoHistory) keeps only
	// the versions that are still current.
	Retention time.Duration
	// ReaderRole is the read-only role for SQL clients; empty means
	// DefaultReaderRole.
	ReaderRole string
}

// DefaultRetention is how long history is kept unless the spec says.
const DefaultRetention = 30 * 24 * time.Hour

// NoHistory as a Retention keeps no superseded versions.
const NoHistory time.Duration = -1

// DefaultReaderRole is the role that may SELECT from every feature store of
// a server and do nothing else.
const DefaultReaderRole = "featurestore_reader"

// Columns the store uses itself; features cannot take these names.
var reservedColumns = []string{"key", "embedding", "event_time", "updated_at", "valid_from", "valid_to", "_row"}

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// TableName is the latest-values table of a store named name.
func TableName(name string) string {
	return strings.NewReplacer("-", "_", ".", "_").Replace(name)
}

func (s Spec) withDefaults() Spec {
	if s.VectorType == "" {
		s.VectorType = Vector
	}
	if s.Distance == "" {
		s.Distance = Cosine
	}
	if s.Index.Type == "" {
		s.Index.Type = HNSW
	}
	if s.Index.Type == HNSW {
		if s.Index.M == 0 {
			s.Index.M = 16
		}
		if s.Index.EfConstruction == 0 {
			s.Index.EfConstruction = 64
		}
	}
	if s.Index.Type == IVFFlat && s.Index.Lists == 0 {
		s.Index.Lists = 100
	}
	if s.Retention == 0 {
		s.Retention = DefaultRetention
	}
	if s.ReaderRole == "" {
		s.ReaderRole = DefaultReaderRole
	}
	return s
}

// Validate reports the first problem with a spec, naming the field. The
// controller's admission rules catch these first; the store checks again
// because it is also used directly from Go.
func (s Spec) Validate() error {
	s = s.withDefaults()
	table := TableName(s.Name)
	if !identRE.MatchString(table) || len(table) > 55 {
		return fmt.Errorf("name %q: a store name must be lower case letters, digits, - and _, at most 55 characters (its history table adds _history)", s.Name)
	}
	switch s.VectorType {
	case Vector, HalfVec:
	default:
		return fmt.Errorf("vectorType %q: want vector or halfvec", s.VectorType)
	}
	switch s.Distance {
	case Cosine, L2, InnerProduct:
	default:
		return fmt.Errorf("distance %q: want cosine, l2 or inner_product", s.Distance)
	}
	if s.Dimensions < 1 || s.Dimensions > 16000 {
		return fmt.Errorf("dimensions %d: want 1 to 16000", s.Dimensions)
	}
	switch s.Index.Type {
	case HNSW:
		if s.Index.M < 2 || s.Index.M > 100 {
			return fmt.Errorf("index.hnsw.m %d: want 2 to 100", s.Index.M)
		}
		if s.Index.EfConstruction < 4 || s.Index.EfConstruction > 1000 {
			return fmt.Errorf("index.hnsw.efConstruction %d: want 4 to 1000", s.Index.EfConstruction)
		}
	case IVFFlat:
		if s.Index.Lists < 1 || s.Index.Lists > 32768 {
			return fmt.Errorf("index.ivfflat.lists %d: want 1 to 32768", s.Index.Lists)
		}
	case NoIndex:
	default:
		return fmt.Errorf("index.type %q: want hnsw, ivfflat or none", s.Index.Type)
	}
	// pgvector indexes vector up to 2000 dimensions and halfvec up to
	// 4000; a vector store above 2000 is indexed as halfvec (indexedExpr).
	if s.Index.Type != NoIndex && s.Dimensions > 4000 {
		return fmt.Errorf("dimensions %d: an %s index supports at most 4000 dimensions (2000 as vector, up to 4000 indexed as halfvec); set index.type to none for exact search, or use fewer dimensions", s.Dimensions, s.Index.Type)
	}
	seen := map[string]bool{}
	for i, f := range s.Features {
		if !identRE.MatchString(f.Name) {
			return fmt.Errorf("features[%d].name %q: want lower case letters, digits and _", i, f.Name)
		}
		for _, r := range reservedColumns {
			if f.Name == r {
				return fmt.Errorf("features[%d].name %q: is a column name the feature store uses itself", i, f.Name)
			}
		}
		if seen[f.Name] {
			return fmt.Errorf("features[%d].name %q: defined twice", i, f.Name)
		}
		seen[f.Name] = true
		switch f.Type {
		case Text, BigInt, Double, Boolean, Timestamptz, JSONB:
		default:
			return fmt.Errorf("features[%d].type %q: want text, bigint, double, boolean, timestamptz or jsonb", i, f.Type)
		}
		if f.Indexed && f.Type == JSONB {
			return fmt.Errorf("features[%d].indexed: feature %q is jsonb, which a B-tree cannot index; index it with SQL (a GIN index) instead", i, f.Name)
		}
	}
	if !identRE.MatchString(s.ReaderRole) {
		return fmt.Errorf("readerRole %q: want lower case letters, digits and _", s.ReaderRole)
	}
	return nil
}

// hasIndexedFeature reports whether any feature has a B-tree index.
func (s Spec) hasIndexedFeature() bool {
	for _, f := range s.Features {
		if f.Indexed {
			return true
		}
	}
	return false
}

// feature returns the feature named name.
func (s Spec) feature(name string) (Feature, bool) {
	for _, f := range s.Features {
		if f.Name == name {
			return f, true
		}
	}
	return Feature{}, false
}

// columnType is the embedding column's SQL type, as format_type prints it.
func (s Spec) columnType() string {
	return fmt.Sprintf("%s(%d)", s.VectorType, s.Dimensions)
}

// distanceOp is the pgvector operator of the distance.
func (s Spec) distanceOp() string {
	switch s.Distance {
	case L2:
		return "<->"
	case InnerProduct:
		return "<#>"
	default:
		return "<=>"
	}
}

// indexedExpr is what the index covers and search orders by. vector
// indexes stop at 2000 dimensions, so above that the index is on a halfvec
// cast, as pgvector recommends.
func (s Spec) indexedExpr() string {
	if s.VectorType == Vector && s.Dimensions > 2000 && s.Index.Type != NoIndex {
		return fmt.Sprintf("(embedding::halfvec(%d))", s.Dimensions)
	}
	return "embedding"
}

// queryParam casts the query vector parameter to what indexedExpr is. On
// the embedding column itself PostgreSQL infers the parameter's type from
// the column, as in the plain SQL users write, so there is no cast to
// evaluate (Search has checked the dimensions already).
func (s Spec) queryParam(p string) string {
	if s.indexedExpr() != "embedding" {
		return fmt.Sprintf("%s::halfvec(%d)", p, s.Dimensions)
	}
	return p
}

// opClass is the index operator class for the type and distance.
func (s Spec) opClass() string {
	t := string(s.VectorType)
	if s.indexedExpr() != "embedding" {
		t = "halfvec"
	}
	switch s.Distance {
	case L2:
		return t + "_l2_ops"
	case InnerProduct:
		return t + "_ip_ops"
	default:
		return t + "_cosine_ops"
	}
}
