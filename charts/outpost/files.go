package chart

import (
	"embed"
	"io/fs"
)

// chartFiles is the whole chart as `helm install` reads it from a
// directory; templates/* (not templates/) so that _helpers.tpl is included.
//
//go:embed Chart.yaml values.yaml .helmignore crds/*.yaml templates/*
var chartFiles embed.FS

// Files returns the chart's files (Chart.yaml, values.yaml, .helmignore,
// crds/ and templates/), for `outpost bundle create` to carry the chart
// this binary was built with. The Go files are not among them.
func Files() fs.FS { return chartFiles }
