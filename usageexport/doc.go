// Package usageexport owns usage metering: the ledger of usage records in
// controldb, signed monthly export files and their verification, the upload
// client, the direct-mode streamer, and the hub that receives both.
package usageexport
