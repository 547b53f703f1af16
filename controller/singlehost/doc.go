// Package singlehost is Outpost on one host without Kubernetes: the state
// directory's layout, `outpost up` (controldb, the dir source and the local
// runtime wired together), and the kubectl-like commands that read and
// write the manifests directory (apply, get, describe, delete, psql).
// Lookups of declared objects (an instance's ObjectStore, a Backup's
// instance, a FeatureStore) answer from accepted state, see lookup.go.
package singlehost
