// Package controldb is the controller's own state, kept in PostgreSQL rather
// than in files of its own making: the objects the controller has accepted
// with their status, manifest errors, events and port allocations of the
// single-host runtime, and (later) usage records and backup catalogues.
//
// On one host the controller provisions controldb for itself with the
// postgres package, under the state directory; Open connects to any
// PostgreSQL URL instead.
package controldb
