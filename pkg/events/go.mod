module github.com/awesome-pizza/pizza/pkg/events

go 1.26.0

require github.com/google/uuid v1.6.0

require (
	github.com/segmentio/asm v1.1.3 // indirect
	github.com/segmentio/encoding v0.5.4
	golang.org/x/sys v0.50.0 // indirect
)

replace github.com/awesome-pizza/pizza/cmd/pizza => ../../cmd/pizza

replace github.com/awesome-pizza/pizza/pkg/catalog => ../../pkg/catalog

replace github.com/awesome-pizza/pizza/pkg/eventstore => ../../pkg/eventstore

replace github.com/awesome-pizza/pizza/pkg/projection => ../../pkg/projection

replace github.com/awesome-pizza/pizza/pkg/service => ../../pkg/service

replace github.com/awesome-pizza/pizza/pkg/testkit => ../../pkg/testkit

replace github.com/awesome-pizza/pizza/services/gateway => ../../services/gateway

replace github.com/awesome-pizza/pizza/services/orders => ../../services/orders

replace github.com/awesome-pizza/pizza/pkg/problem => ../../pkg/problem

replace github.com/awesome-pizza/pizza/services/drivers => ../../services/drivers

replace github.com/awesome-pizza/pizza/services/inventory => ../../services/inventory

replace github.com/awesome-pizza/pizza/services/kitchen => ../../services/kitchen

replace github.com/awesome-pizza/pizza/deploy/test => ../../deploy/test

replace github.com/awesome-pizza/pizza/pkg/tracing => ../../pkg/tracing

replace github.com/awesome-pizza/pizza/services/mqttbridge => ../../services/mqttbridge

replace github.com/awesome-pizza/pizza/tests/fault => ../../tests/fault

replace github.com/awesome-pizza/pizza/tests/browser => ../../tests/browser

replace github.com/awesome-pizza/pizza/pkg/region => ../../pkg/region

replace github.com/awesome-pizza/pizza/tests/regions => ../../tests/regions

replace github.com/awesome-pizza/pizza/tests/scale => ../../tests/scale

replace github.com/awesome-pizza/pizza/pkg/netutil => ../../pkg/netutil
