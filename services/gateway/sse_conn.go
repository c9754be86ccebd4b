package gateway

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// sseWriteTimeout bounds one frame's write to a client. A client that
// stops reading for longer loses its stream (it reconnects with
// Last-Event-ID and misses nothing); it never holds the stream's
// resources forever.
const sseWriteTimeout = 10 * time.Second

// sseRetry is the first frame of every stream: the reconnect hint.
const sseRetry = "retry: 2000\n\n"

// sseOut is where one stream's frames go: the connection itself once the
// stream has taken it over from net/http, or the response writer where
// it cannot (HTTP/2, a wrapped writer).
type sseOut struct {
	conn net.Conn
	res  *echo.Response
}

// frameBufs holds the buffers frames are formatted in, so an idle stream
// keeps none of its own.
var frameBufs = sync.Pool{New: func() any { return new([]byte) }}

// frame formats one complete frame and sends it.
func (o *sseOut) frame(format string, args ...any) error {
	bp := frameBufs.Get().(*[]byte)
	b := fmt.Appendf((*bp)[:0], format, args...)
	err := o.write(b)
	if cap(b) <= 64<<10 {
		*bp = b
		frameBufs.Put(bp)
	}
	return err
}

// write sends complete frames and pushes them out at once.
func (o *sseOut) write(b []byte) error {
	if o.conn != nil {
		_ = o.conn.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
		_, err := o.conn.Write(b)
		return err
	}
	if _, err := o.res.Write(b); err != nil {
		return err
	}
	return http.NewResponseController(o.res).Flush()
}

// serveSSE answers with an event stream and runs it: run writes its
// frames to out until ctx ends — the client left, the gateway closes its
// streams (CloseStreams) — or returns early when a write fails. done runs
// once the stream is over (release what the handler set up for it).
//
// On HTTP/1.x the stream takes the connection over from net/http
// (ADR 0022): it writes its own response head (the body ends with the
// connection) and runs in a goroutine of its own, and the handler returns
// at once. An idle stream then holds no net/http buffers, no parked
// handler inside the middleware chain, and no connection goroutine: a
// watcher goroutine and a reader that notices the client leaving. Where
// the connection cannot be taken (HTTP/2), the stream runs inside the
// handler as a plain streamed response.
func (g *Gateway) serveSSE(c echo.Context, done func(), run func(ctx context.Context, out *sseOut)) error {
	res := c.Response()
	h := res.Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set(echo.HeaderCacheControl, "no-cache")
	h.Set("X-Accel-Buffering", "no")
	g.m.sseClients.Inc()
	finish := func() {
		g.m.sseClients.Dec()
		done()
	}

	if conn := g.takeOver(c); conn != nil {
		ctx, cancel := context.WithCancel(context.WithoutCancel(c.Request().Context()))
		g.detached.Add(1)
		go func() {
			defer g.detached.Done()
			defer finish()
			defer cancel()
			defer conn.Close()
			go readUntilClosed(conn, cancel)
			stopOnClose := context.AfterFunc(g.streams, cancel)
			defer stopOnClose()
			run(ctx, &sseOut{conn: conn})
		}()
		return nil
	}

	defer finish()
	h.Set(echo.HeaderConnection, "keep-alive")
	res.WriteHeader(http.StatusOK)
	_ = http.NewResponseController(res.Writer).SetWriteDeadline(time.Time{})
	out := &sseOut{res: res}
	if err := out.write([]byte(sseRetry)); err != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(c.Request().Context())
	defer cancel()
	stopOnClose := context.AfterFunc(g.streams, cancel)
	defer stopOnClose()
	run(ctx, out)
	return nil
}

// takeOver takes an HTTP/1.x connection from net/http and writes the
// stream's response head and reconnect hint on it: the response's
// headers as the middleware set them, no Content-Length and no chunking
// (the body ends when the connection closes, RFC 9112 §6.3). It returns
// nil, having written nothing, where that is not possible. When the
// client is already gone, the connection comes back closed: the stream's
// first write fails and it ends.
func (g *Gateway) takeOver(c echo.Context) net.Conn {
	r := c.Request()
	res := c.Response()
	if g.cfg.StreamsInHandler || r.ProtoMajor != 1 || res.Committed {
		return nil
	}
	conn, _, err := http.NewResponseController(res).Hijack()
	if err != nil {
		return nil
	}
	// What net/http had buffered from the client is left behind: an SSE
	// client sends nothing after its request.
	res.Committed, res.Status = true, http.StatusOK
	h := res.Header()
	h.Set(echo.HeaderConnection, "close")
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\n")
	_ = h.Write(&head)
	head.WriteString("\r\n" + sseRetry)
	_ = conn.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	if _, err := conn.Write(head.Bytes()); err != nil {
		_ = conn.Close()
	}
	return conn
}

// readUntilClosed reads (and drops) what the client sends until the
// connection ends, then cancels the stream: this is how a taken-over
// stream learns that its client left without waiting for a heartbeat.
func readUntilClosed(conn net.Conn, cancel context.CancelFunc) {
	var b [1]byte
	for {
		if _, err := conn.Read(b[:]); err != nil {
			cancel()
			return
		}
	}
}
