// Package usageexport owns usage metering: the ledger of usage records in
// controldb, signed monthly export files and their verification, the upload
// client and the direct-mode streamer. The hub that receives both lives in
// usageexport/hub.
//
// How metering works, in one paragraph: the reconciler tells the Ledger what
// each instance looks like whenever it reconciles it (Observe) and when it is
// deleted (Deleted, DeletedAsRequested). The ledger keeps a timeline of intervals per instance;
// creation, deletion and a change of what is billed (the CPU limit, memory,
// storage or labels) end one interval and start the next. A Sampler turns
// the timeline into usage records, one per interval per closed clock hour,
// whose ids are the sha256 of what they describe. Because records are a pure
// function of the timeline and the hour, a sampler that was down, crashed
// half way or ran twice writes exactly the same records as one that never
// stopped.
//
// Around that: the orphan sweep (sweep.go) closes instances the source no
// longer declares; the clock check (clockcheck.go) keeps records from
// ending after the newest trusted time plus a skew; the Streamer
// (streamer.go) sends every record the hub has not acknowledged (acked_at
// on the record) and sets refused batches aside (refusals.go); SiteMeter
// (site.go) runs all of it once per metering pass.
//
// The package does not know where instances run or where their specs come
// from; it imports neither controller nor its API types. It takes plain
// values (Instance, Shape, Site) and returns plain results (SiteUsage and
// its Verdicts), which the controller core turns into the DataController's
// status (see controller/domain.go).
package usageexport
