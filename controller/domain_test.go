package controller

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/outpostdata/outpost/vectorstore"
)

// vectorstore keeps its own types for what a FeatureStore's spec declares
// (see domain.go); admission must allow exactly the values vectorstore
// knows, or a spec would be admitted and then fail, or the other way round.
// Every value admission allows must also pass vectorstore's Validate.
func TestFeatureStoreEnumsMatchVectorstore(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("api", "v1alpha1", "featurestore_types.go"))
	if err != nil {
		t.Fatal(err)
	}
	base := vectorstore.Spec{Name: "items", Dimensions: 4}
	for _, tc := range []struct {
		typ   string
		known []string
		with  func(v string) vectorstore.Spec
	}{
		{"VectorType", strs(vectorstore.Vector, vectorstore.HalfVec),
			func(v string) vectorstore.Spec { s := base; s.VectorType = vectorstore.VectorType(v); return s }},
		{"Distance", strs(vectorstore.Cosine, vectorstore.L2, vectorstore.InnerProduct),
			func(v string) vectorstore.Spec { s := base; s.Distance = vectorstore.Distance(v); return s }},
		{"IndexType", strs(vectorstore.HNSW, vectorstore.IVFFlat, vectorstore.NoIndex),
			func(v string) vectorstore.Spec { s := base; s.Index.Type = vectorstore.IndexType(v); return s }},
		{"FeatureType", strs(vectorstore.Text, vectorstore.BigInt, vectorstore.Double, vectorstore.Boolean, vectorstore.Timestamptz, vectorstore.JSONB),
			func(v string) vectorstore.Spec {
				s := base
				s.Features = []vectorstore.Feature{{Name: "f", Type: vectorstore.FeatureType(v)}}
				return s
			}},
	} {
		m := regexp.MustCompile(`(?m)^// \+kubebuilder:validation:Enum=(.*)\ntype ` + tc.typ + ` string`).FindSubmatch(b)
		if m == nil {
			t.Errorf("no Enum marker on the %s type in featurestore_types.go", tc.typ)
			continue
		}
		inCRD := strings.Split(string(m[1]), ";")
		for _, v := range inCRD {
			if err := tc.with(v).Validate(); err != nil {
				t.Errorf("%s %q: admission allows it, vectorstore refuses it: %v", tc.typ, v, err)
			}
		}
		slices.Sort(inCRD)
		slices.Sort(tc.known)
		if !slices.Equal(inCRD, tc.known) {
			t.Errorf("%s: the CRD allows %v, vectorstore knows %v", tc.typ, inCRD, tc.known)
		}
	}
}

func strs[T ~string](vs ...T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}
