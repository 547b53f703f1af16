// Package vectorstore owns feature stores inside PostgreSQL with pgvector:
// their schema (latest-values and history tables), bulk ingest through binary
// COPY, nearest-neighbour search with filters, point-in-time ("as of")
// lookups, index builds and the read-only role for SQL clients.
//
// It works on a database connection it is given; provisioning the server is
// the postgres package's job.
package vectorstore
