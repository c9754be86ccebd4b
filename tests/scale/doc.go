// Package scale measures order intake with one and with several instances
// of each service (issue #11): the services and gateways run in process,
// as in `pizza dev`, but each instance on its own NATS connection and its
// own Redis client, against one embedded nats-server with JetStream on
// disk and the real Redis. The benchmark is BenchmarkIntake; the test
// TestThreeInstancesPlaceEveryOrderOnce checks that the three-instance
// setup places every order exactly once and shows it in the read model.
//
//	go test -count=1 ./tests/scale/
//	go test -run '^$' -bench Intake -benchtime 500x ./tests/scale/
package scale
