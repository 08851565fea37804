// Package metrics owns presencehub's Prometheus collectors.
//
// Everything is registered on a registry passed to New, never on the
// global one, so tests and embedders can run several hubs in one process.
// Label values come only from fixed lists declared here (and pre-declared
// at zero, so rate() and alerts see a series before its first event); a
// value that is not on a list is counted as "other". No label ever carries
// an agent, conversation or workspace id.
//
// Concurrency: every method of *Metrics, and the Publisher it returns, is
// safe for concurrent use and never blocks on I/O. The hub calls the
// Observer methods on its connection and broadcast paths; the store calls
// the Publisher from its commit loop.
package metrics
