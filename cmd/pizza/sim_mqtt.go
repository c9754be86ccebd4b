package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// MQTTPositions reports positions the way drivers' phones do: each driver
// is its own MQTT 3.1.1 client, logged in with its device credentials, and
// publishes every fix at QoS 1 on pizza/drivers/{driverId}/location; a fix
// counts as reported once the bridge acknowledged it (after the durable
// append).
type MQTTPositions struct {
	Broker string // tcp://host:port
	// Secret returns a driver's device secret (for example one issued by
	// POST /api/drivers/{id}/credentials, or printed by pizza dev).
	Secret func(ctx context.Context, driverID string) (string, error)

	mu      sync.Mutex
	clients map[string]mqtt.Client
}

// ReportPosition implements PositionSink.
func (m *MQTTPositions) ReportPosition(ctx context.Context, driverID string, fix Fix) error {
	c, err := m.client(ctx, driverID)
	if err != nil {
		return err
	}
	payload, err := json.Marshal(map[string]any{
		"latitude": fix.Latitude, "longitude": fix.Longitude, "speed": fix.SpeedKmh, "heading": fix.Heading,
		"accuracy": fix.AccuracyM, "timestamp": fix.At.UTC().Format(time.RFC3339Nano),
	})
	if err != nil {
		return err
	}
	tok := c.Publish("pizza/drivers/"+driverID+"/location", 1, false, payload)
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *MQTTPositions) client(ctx context.Context, driverID string) (mqtt.Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.clients[driverID]; ok && c.IsConnectionOpen() {
		return c, nil
	}
	secret, err := m.Secret(ctx, driverID)
	if err != nil {
		return nil, fmt.Errorf("device credentials of %s: %w", driverID, err)
	}
	opts := mqtt.NewClientOptions().AddBroker(m.Broker).SetClientID("sim-" + driverID).SetUsername(driverID).SetPassword(secret).
		SetCleanSession(true).SetAutoReconnect(true).SetConnectTimeout(5 * time.Second)
	c := mqtt.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("MQTT connect as %s: %v", driverID, tok.Error())
	}
	if m.clients == nil {
		m.clients = map[string]mqtt.Client{}
	}
	m.clients[driverID] = c
	return c, nil
}

// Close disconnects every driver's client.
func (m *MQTTPositions) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.clients {
		c.Disconnect(100)
	}
	m.clients = nil
}
