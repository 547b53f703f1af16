// Package chart gives the outpost binary the files of the Helm chart it needs
// at run time: the CustomResourceDefinitions in crds/, as `make generate`
// (controller-gen) writes them from controller/api/v1alpha1 (crds.go), and
// the whole chart, which an air-gap bundle carries (files.go).
//
// Embedding the chart's own files, rather than a copy, means a manifests
// directory on a single host is validated against exactly the schemas that
// `helm install` puts into a cluster. The chart's .helmignore keeps this Go
// file out of the packaged chart.
package chart

import (
	"embed"
	"io/fs"
)

//go:embed crds/*.yaml
var crdFiles embed.FS

// CRDs returns the chart's CRD files, one per resource, named as in crds/
// (for example "outpost.dev_postgresinstances.yaml").
func CRDs() fs.FS {
	sub, err := fs.Sub(crdFiles, "crds")
	if err != nil {
		// fs.Sub fails only for an invalid path; "crds" is a constant.
		panic(err)
	}
	return sub
}
