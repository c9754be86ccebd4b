package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/nats-io/nats.go/micro"
)

type echoCmd struct {
	N    int  `json:"n"`
	Fail bool `json:"fail"`
}

// Requests run concurrently (a slow one does not hold up the others),
// replies and typed problem replies reach the caller, and after Close a
// request is refused with a 503 instead of being lost.
func TestEndpointsRunConcurrentlyAndReplySafely(t *testing.T) {
	nc := testkit.Connect(t, testkit.RunJetStream(t))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	release := make(chan struct{})
	e := service.NewEndpoints(context.Background(), nc, log, 8, 5*time.Second, func(err error, _ any) *problem.Problem {
		return problem.Conflict(err.Error())
	})
	handler := service.Handle(e, func(_ context.Context, c echoCmd) (echoCmd, error) {
		if c.N == 0 {
			<-release // the slow one
		}
		if c.Fail {
			return c, errors.New("refused")
		}
		return echoCmd{N: c.N * 2}, nil
	})
	svc, err := micro.AddService(nc, micro.Config{Name: "echo", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.AddEndpoint("echo", handler, micro.WithEndpointSubject("svc.echo")); err != nil {
		t.Fatal(err)
	}
	slow := make(chan error, 1)
	go func() {
		_, err := nc.Request("svc.echo", []byte(`{"n":0}`), 5*time.Second)
		slow <- err
	}()
	var wg sync.WaitGroup
	for i := 1; i <= 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			b, _ := json.Marshal(echoCmd{N: i, Fail: i%5 == 0})
			msg, err := nc.Request("svc.echo", b, 5*time.Second)
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			if i%5 == 0 {
				var p problem.Problem
				_ = json.Unmarshal(msg.Data, &p)
				if msg.Header.Get(micro.ErrorCodeHeader) != "409" || p.Detail != "refused" {
					t.Errorf("request %d: error reply %v %s", i, msg.Header, msg.Data)
				}
				return
			}
			var got echoCmd
			if err := json.Unmarshal(msg.Data, &got); err != nil || got.N != 2*i {
				t.Errorf("request %d: reply %s", i, msg.Data)
			}
		}(i)
	}
	wg.Wait() // all answered while the slow one still waits
	close(release)
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
	e.Close()
	msg, err := nc.Request("svc.echo", []byte(`{"n":1}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get(micro.ErrorCodeHeader) != "503" {
		t.Fatalf("after Close: %v %s", msg.Header, msg.Data)
	}
	_ = svc.Stop()
}
