// Package hub is the central service that receives usage from sites: export
// files uploaded by operators (indirect mode) and batches streamed by
// controllers (direct mode). It checks each site's token and signature,
// stores records in PostgreSQL deduplicated by record id, and serves usage
// per site and month as JSON, CSV and a self-contained web page.
//
// It reads files with usageexport's verifier and does not know about
// controllers, instances' runtimes or Kubernetes.
package hub
