// Command mqttbridge runs the MQTT bridge on its own (for Kubernetes); it
// is the same Service that `pizza dev` runs in process.
package main

import (
	"context"
	"flag"
	"log/slog"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/services/mqttbridge"
	"github.com/nats-io/nats.go/jetstream"
)

func main() { service.Main("mqttbridge", run) }

func run(ctx context.Context, log *slog.Logger, args []string) error {
	var natsURL, redisURL, keyspace, catalogPath, healthAddr, mqttAddr, wsAddr string
	var replicas, maxClients, maxPacket, maxPayload int
	var rate, timeScale float64
	var tlsFiles service.TLSFiles
	fs := flag.NewFlagSet("mqttbridge", flag.ContinueOnError)
	service.StringFlag(fs, &natsURL, "nats-url", "nats://127.0.0.1:4222", "NATS server(s)", "NATS_URL")
	service.StringFlag(fs, &redisURL, "redis-url", "redis://127.0.0.1:6379/0", "Redis for read models", "REDIS_URL")
	service.StringFlag(fs, &keyspace, "keyspace", "pizza:", "prefix of Redis keys")
	service.StringFlag(fs, &catalogPath, "catalog", "", "catalogue file; empty: the built-in seed")
	service.StringFlag(fs, &healthAddr, "health-addr", ":8085", "address of /healthz, /readyz and /metrics")
	service.StringFlag(fs, &mqttAddr, "mqtt-addr", ":1883", "MQTT listener (TCP)")
	service.StringFlag(fs, &wsAddr, "mqtt-ws-addr", "", "MQTT over WebSocket listener; empty: none")
	service.IntFlag(fs, &replicas, "stream-replicas", 1, "replicas of the streams and bucket this service provisions")
	service.IntFlag(fs, &maxClients, "mqtt-max-clients", 10_000, "connected MQTT clients at most")
	service.IntFlag(fs, &maxPacket, "mqtt-max-packet-bytes", 64*1024, "largest MQTT packet; larger ones close the connection")
	service.IntFlag(fs, &maxPayload, "mqtt-max-payload-bytes", 4096, "largest device message; larger ones are refused")
	service.FloatFlag(fs, &rate, "mqtt-rate", 20, "publishes per connection per second; negative: unlimited")
	service.FloatFlag(fs, &timeScale, "time-scale", 1, "speed-up of demo time")
	service.StringFlag(fs, &tlsFiles.Cert, "tls-cert", "", "certificate (PEM) to serve MQTT over TLS")
	service.StringFlag(fs, &tlsFiles.Key, "tls-key", "", "key (PEM) of --tls-cert")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log.Info("starting mqttbridge", "nats_url", service.Redact(natsURL), "redis_url", service.Redact(redisURL), "keyspace", keyspace,
		"health_addr", healthAddr, "mqtt_addr", mqttAddr, "mqtt_ws_addr", wsAddr, "stream_replicas", replicas,
		"max_clients", maxClients, "max_packet_bytes", maxPacket, "max_payload_bytes", maxPayload, "rate", rate)

	cat, err := catalog.Load(catalogPath)
	if err != nil {
		return err
	}
	healthL, err := service.Listen(healthAddr, "health-addr")
	if err != nil {
		return err
	}
	nc, err := service.ConnectNATS(natsURL, "mqttbridge", log)
	if err != nil {
		return err
	}
	defer nc.Drain()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	rdb, err := service.ConnectRedis(ctx, redisURL, log)
	if err != nil {
		return err
	}
	defer rdb.Close()
	metrics := service.NewMetrics()
	svc, err := mqttbridge.New(mqttbridge.Config{TLS: tlsFiles,
		Keyspace: keyspace, Streams: eventstore.StreamOptions{Replicas: replicas, Storage: jetstream.FileStorage}, TimeScale: timeScale,
		Addr: mqttAddr, WSAddr: wsAddr, MaxClients: maxClients, MaxPacketBytes: maxPacket, MaxPayloadBytes: maxPayload, RatePerSecond: rate,
	}, mqttbridge.Deps{NC: nc, JS: js, Redis: rdb, Catalog: cat, Log: log, Metrics: metrics})
	if err != nil {
		return err
	}
	if err := svc.Start(ctx); err != nil {
		return err
	}
	health := service.HealthHandler(metrics, map[string]service.Check{
		"nats":       func(context.Context) error { return natsConnected(nc.IsConnected()) },
		"redis":      func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
		"read-model": svc.Ready,
	})
	err = service.Serve(ctx, healthL, health, 5*time.Second, log)
	svc.Stop()
	return err
}

type notConnected struct{}

func (notConnected) Error() string { return "not connected to NATS" }

func natsConnected(ok bool) error {
	if ok {
		return nil
	}
	return notConnected{}
}
