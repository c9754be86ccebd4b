module github.com/awesome-pizza/pizza/deploy/test

go 1.26.0

require (
	github.com/awesome-pizza/pizza/pkg/catalog v0.0.0-00010101000000-000000000000
	github.com/awesome-pizza/pizza/pkg/netutil v0.0.0-00010101000000-000000000000
	github.com/awesome-pizza/pizza/pkg/region v0.0.0-00010101000000-000000000000
	github.com/nats-io/nats-server/v2 v2.15.2
	github.com/nats-io/nats.go v1.55.0
	go.starlark.net v0.0.0-20260908191801-89a6a09411d5
	k8s.io/api v0.37.2
	k8s.io/apimachinery v0.37.2
	sigs.k8s.io/kustomize/api v0.21.2
	sigs.k8s.io/kustomize/kyaml v0.21.2
	sigs.k8s.io/yaml v1.6.0
)

require (
	github.com/antithesishq/antithesis-sdk-go v0.9.0-default-no-op // indirect
	github.com/awesome-pizza/pizza/pkg/events v0.0.0-00010101000000-000000000000 // indirect
	github.com/awesome-pizza/pizza/pkg/eventstore v0.0.0-00010101000000-000000000000 // indirect
	github.com/awesome-pizza/pizza/pkg/projection v0.0.0-00010101000000-000000000000 // indirect
	github.com/awesome-pizza/pizza/pkg/tracing v0.0.0-00010101000000-000000000000 // indirect
	github.com/blang/semver/v4 v4.0.0 // indirect
	github.com/cenkalti/backoff/v5 v5.0.3 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/fxamacker/cbor/v2 v2.9.1 // indirect
	github.com/go-errors/errors v1.5.1 // indirect
	github.com/go-logr/logr v1.4.4 // indirect
	github.com/go-logr/stdr v1.2.2 // indirect
	github.com/go-openapi/jsonpointer v1.0.0 // indirect
	github.com/go-openapi/jsonreference v1.0.0 // indirect
	github.com/go-openapi/swag v0.28.0 // indirect
	github.com/go-openapi/swag/cmdutils v0.28.0 // indirect
	github.com/go-openapi/swag/conv v0.28.0 // indirect
	github.com/go-openapi/swag/fileutils v0.28.0 // indirect
	github.com/go-openapi/swag/jsonutils v0.28.0 // indirect
	github.com/go-openapi/swag/loading v0.28.0 // indirect
	github.com/go-openapi/swag/mangling v0.28.0 // indirect
	github.com/go-openapi/swag/netutils v0.28.0 // indirect
	github.com/go-openapi/swag/pools v0.28.0 // indirect
	github.com/go-openapi/swag/stringutils v0.28.0 // indirect
	github.com/go-openapi/swag/typeutils v0.28.0 // indirect
	github.com/go-openapi/swag/yamlutils v0.28.0 // indirect
	github.com/google/gnostic-models v0.7.1 // indirect
	github.com/google/go-tpm v0.9.8 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/grpc-ecosystem/grpc-gateway/v2 v2.30.0 // indirect
	github.com/json-iterator/go v1.1.12 // indirect
	github.com/klauspost/compress v1.20.4 // indirect
	github.com/minio/highwayhash v1.0.4 // indirect
	github.com/modern-go/concurrent v0.0.0-20180306012644-bacd9c7ef1dd // indirect
	github.com/modern-go/reflect2 v1.0.3-0.20250322232337-35a7c28c31ee // indirect
	github.com/monochromegane/go-gitignore v0.0.0-20200626010858-205db1a8cc00 // indirect
	github.com/nats-io/jwt/v2 v2.8.3 // indirect
	github.com/nats-io/nkeys v0.4.17 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/redis/go-redis/v9 v9.23.0 // indirect
	github.com/segmentio/asm v1.1.3 // indirect
	github.com/segmentio/encoding v0.5.4 // indirect
	github.com/x448/float16 v0.8.4 // indirect
	github.com/xlab/treeprint v1.2.0 // indirect
	go.opentelemetry.io/auto/sdk v1.2.1 // indirect
	go.opentelemetry.io/otel v1.47.0 // indirect
	go.opentelemetry.io/otel/exporters/otlp/otlptrace v1.47.0 // indirect
	go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp v1.47.0 // indirect
	go.opentelemetry.io/otel/log v1.47.0 // indirect
	go.opentelemetry.io/otel/metric v1.47.0 // indirect
	go.opentelemetry.io/otel/sdk v1.47.0 // indirect
	go.opentelemetry.io/otel/trace v1.47.0 // indirect
	go.opentelemetry.io/proto/otlp v1.11.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	go.yaml.in/yaml/v2 v2.4.4 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	golang.org/x/time v0.16.0 // indirect
	google.golang.org/genproto/googleapis/api v0.0.0-20260928230214-8a89bd6388cc // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260928230214-8a89bd6388cc // indirect
	google.golang.org/grpc v1.83.2 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
	gopkg.in/evanphx/json-patch.v4 v4.13.0 // indirect
	gopkg.in/inf.v0 v0.9.1 // indirect
	k8s.io/klog/v2 v2.140.0 // indirect
	k8s.io/kube-openapi v0.0.0-20260721132016-d427ff9ee9ad // indirect
	k8s.io/utils v0.0.0-20260626114624-be93311217bd // indirect
	sigs.k8s.io/json v0.0.0-20250730193827-2d320260d730 // indirect
	sigs.k8s.io/randfill v1.0.0 // indirect
	sigs.k8s.io/structured-merge-diff/v6 v6.4.2 // indirect
)

replace github.com/awesome-pizza/pizza/cmd/pizza => ../../cmd/pizza

replace github.com/awesome-pizza/pizza/pkg/catalog => ../../pkg/catalog

replace github.com/awesome-pizza/pizza/pkg/events => ../../pkg/events

replace github.com/awesome-pizza/pizza/pkg/eventstore => ../../pkg/eventstore

replace github.com/awesome-pizza/pizza/pkg/problem => ../../pkg/problem

replace github.com/awesome-pizza/pizza/pkg/projection => ../../pkg/projection

replace github.com/awesome-pizza/pizza/pkg/service => ../../pkg/service

replace github.com/awesome-pizza/pizza/pkg/testkit => ../../pkg/testkit

replace github.com/awesome-pizza/pizza/pkg/tracing => ../../pkg/tracing

replace github.com/awesome-pizza/pizza/services/drivers => ../../services/drivers

replace github.com/awesome-pizza/pizza/services/gateway => ../../services/gateway

replace github.com/awesome-pizza/pizza/services/inventory => ../../services/inventory

replace github.com/awesome-pizza/pizza/services/kitchen => ../../services/kitchen

replace github.com/awesome-pizza/pizza/services/mqttbridge => ../../services/mqttbridge

replace github.com/awesome-pizza/pizza/services/orders => ../../services/orders

replace github.com/awesome-pizza/pizza/tests/fault => ../../tests/fault

replace github.com/awesome-pizza/pizza/tests/browser => ../../tests/browser

replace github.com/awesome-pizza/pizza/pkg/region => ../../pkg/region

replace github.com/awesome-pizza/pizza/tests/regions => ../../tests/regions

replace github.com/awesome-pizza/pizza/tests/scale => ../../tests/scale

replace github.com/awesome-pizza/pizza/pkg/netutil => ../../pkg/netutil
