// Package events holds the wire contracts of the Awesome Pizza event log:
// stream and subject names per bounded context, the envelope every event is
// stored in, the typed domain events with their schema versions, and the
// codec that turns stored bytes back into typed events (upcasting old
// versions, reporting unknown ones).
//
// It has no runtime dependencies on NATS or Redis on purpose: producers,
// consumers, auditors and tests all speak these types.
package events
