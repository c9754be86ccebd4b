// Package fault is the fault-tolerance suite of Awesome Pizza (issue 10).
//
// Each test injects one kind of fault while load runs, against real
// servers only (in-process nats-server nodes, the real Redis of REDIS_URL,
// the services as real child processes), and asserts the promise of the
// event-sourced design: nothing acknowledged is lost or stored twice, and
// every read model heals from the log by itself.
//
// Every test prints one line that starts with "FAULT-SUMMARY:" with the
// faults injected, the events acknowledged and stored, the duplicates and
// the convergence time. Run the suite with
//
//	go test -race -count=1 -v ./tests/fault/... | grep FAULT-SUMMARY
//
// docs/reliability.md lists the guarantees and the test that proves each.
// The package has no non-test code; this file only documents it.
package fault
