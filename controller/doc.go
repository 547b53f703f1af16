// Package controller is the reconcile core of Outpost: it turns the desired
// state of Outpost resources into running PostgreSQL instances, feature
// stores, backups and usage records, whatever the source of that state (the
// Kubernetes API or a directory of manifests) and wherever the instances run
// (Kubernetes pods or local processes). It also defines the controller's
// Prometheus metrics.
//
// The resource types live in controller/api/v1alpha1. The domain work itself
// is done by the postgres, vectorstore, backup and usageexport packages,
// which this package wires together and never the other way round.
package controller
