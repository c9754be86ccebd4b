package service

import (
	"encoding/json"
	"strconv"

	"github.com/awesome-pizza/pizza/pkg/events/codec"
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Replies to nats.go/micro requests that are answered from another
// goroutine than the handler's. micro's Request.Respond and Request.Error
// record the outcome in the request, which the micro runtime reads as soon
// as the handler returns: calling them later is a data race. These publish
// the same wire format straight to the request's reply subject instead.

// RespondJSON answers a request with a JSON body.
func RespondJSON(nc *nats.Conn, replyTo string, v any) error {
	b, err := codec.Marshal(v)
	if err != nil {
		return err
	}
	return nc.Publish(replyTo, b)
}

// RespondProblem answers a request with a typed micro error whose code is
// the problem's HTTP status and whose body is the problem document.
func RespondProblem(nc *nats.Conn, replyTo string, p *problem.Problem) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	m := &nats.Msg{Subject: replyTo, Data: b, Header: nats.Header{}}
	m.Header.Set(micro.ErrorCodeHeader, strconv.Itoa(p.Status))
	m.Header.Set(micro.ErrorHeader, p.Title)
	return nc.PublishMsg(m)
}
