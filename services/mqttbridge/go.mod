module github.com/awesome-pizza/pizza/services/mqttbridge

go 1.26.0

replace github.com/awesome-pizza/pizza/pkg/events => ../../pkg/events

replace github.com/awesome-pizza/pizza/pkg/eventstore => ../../pkg/eventstore

replace github.com/awesome-pizza/pizza/pkg/projection => ../../pkg/projection

replace github.com/awesome-pizza/pizza/pkg/catalog => ../../pkg/catalog

replace github.com/awesome-pizza/pizza/pkg/problem => ../../pkg/problem

replace github.com/awesome-pizza/pizza/pkg/service => ../../pkg/service

replace github.com/awesome-pizza/pizza/pkg/testkit => ../../pkg/testkit

replace github.com/awesome-pizza/pizza/services/drivers => ../../services/drivers

require (
	github.com/awesome-pizza/pizza/pkg/events v0.0.0-00010101000000-000000000000
	github.com/awesome-pizza/pizza/pkg/problem v0.0.0-00010101000000-000000000000
	github.com/awesome-pizza/pizza/pkg/projection v0.0.0-00010101000000-000000000000
	github.com/awesome-pizza/pizza/services/drivers v0.0.0-00010101000000-000000000000
)

require (
	github.com/awesome-pizza/pizza/pkg/eventstore v0.0.0-00010101000000-000000000000 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/klauspost/compress v1.20.4 // indirect
	github.com/nats-io/nats.go v1.55.0 // indirect
	github.com/nats-io/nkeys v0.4.17 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/redis/go-redis/v9 v9.23.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
