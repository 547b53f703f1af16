// Package controldb is the controller's own state, kept in PostgreSQL rather
// than in files of its own making: the objects the controller has accepted
// with their status, manifest errors, events and port allocations of the
// single-host runtime. The usageexport package keeps its usage ledger in the
// same database, in tables of its own.
//
// On one host the controller provisions controldb for itself with the
// postgres package, under the state directory; Open connects to any
// PostgreSQL URL instead.
package controldb
