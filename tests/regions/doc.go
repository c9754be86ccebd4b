// Package regions tests Awesome Pizza as two regions of one NATS
// supercluster (pkg/region): each region a JetStream cluster with its own
// account and its own orders service, joined by gateways that run through
// a TCP proxy the tests can cut and slow down. The global dashboard is
// built from the GLOBAL account's stream, sourced from both regions.
package regions
