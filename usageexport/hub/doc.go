// Package hub is the central service that receives usage from sites: export
// files uploaded by operators (indirect mode) and batches streamed by
// controllers (direct mode). It checks each site's token and signature,
// stores records in PostgreSQL deduplicated by record id, and serves usage
// per site and month as JSON, CSV and a self-contained web page to holders
// of read or admin tokens.
//
// Files:
//
//	schema.go   the hub's tables, created (and migrated) by Open
//	sites.go    sites and their tokens and keys; read and admin tokens
//	ingest.go   verifying and storing a file or batch; records from the future refused
//	limits.go   body cap, bounded gzip decompression, per-site uploads in flight
//	query.go    the site list with freshness by delivered data, and usage per month
//	gaps.go     months missing from a site's chain of exports
//	server.go   the HTTP API and who may call what; CSV cells defused
//	serve.go    the HTTP server: read timeouts, TLS, mutual TLS
//	page.go     the web page
//
// It reads files with usageexport's verifier and does not know about
// controllers, instances' runtimes or Kubernetes.
package hub
