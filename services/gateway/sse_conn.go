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
// it cannot (HTTP/2, a wrapped writer). It also keeps the stream alive:
// after every interval without a frame it sends a heartbeat comment.
type sseOut struct {
	conn net.Conn
	res  *echo.Response

	mu     sync.Mutex // one writer at a time: the stream or its heartbeat
	closed bool       // set by stop: nothing is written after it
	every  time.Duration
	idle   *time.Timer // fires after every of silence: a heartbeat
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

// write sends complete frames and pushes them out at once; the next
// heartbeat is due an interval later.
func (o *sseOut) write(b []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return net.ErrClosed
	}
	if o.idle != nil {
		o.idle.Reset(o.every)
	}
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

// start sends the reconnect hint (unless the head carried it) and arms
// the heartbeat: a failed heartbeat ends the stream (cancel).
func (o *sseOut) start(every time.Duration, hint bool, cancel context.CancelFunc) error {
	o.every = every
	o.mu.Lock()
	o.idle = time.AfterFunc(every, func() {
		if o.write([]byte(sseHeartbeat)) != nil {
			cancel()
		}
	})
	o.mu.Unlock()
	if hint {
		return o.write([]byte(sseRetry))
	}
	return nil
}

// stop ends the writing: after it returns nothing is written, not even a
// heartbeat already due.
func (o *sseOut) stop() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	if o.idle != nil {
		o.idle.Stop()
	}
}

// serveSSE answers with an event stream and runs it: run writes its
// frames to out until ctx ends — the client left, the gateway closes its
// streams (CloseStreams), a heartbeat failed — or returns early when a
// write fails. done runs once the stream is over (release what the
// handler set up for it).
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
	// stream runs the stream on out until parent ends or the stream fails.
	stream := func(parent context.Context, out *sseOut, hint bool) {
		defer g.m.sseClients.Dec()
		defer done()
		ctx, cancel := context.WithCancel(parent)
		defer cancel()
		stopOnClose := context.AfterFunc(g.streams, cancel)
		defer stopOnClose()
		defer out.stop()
		if out.conn != nil {
			go readUntilClosed(out.conn, cancel)
		}
		if out.start(g.cfg.Heartbeat, hint, cancel) != nil {
			return
		}
		run(ctx, out)
	}

	if conn := g.takeOver(c); conn != nil {
		parent := context.WithoutCancel(c.Request().Context())
		g.detached.Add(1)
		go func() {
			defer g.detached.Done()
			defer conn.Close()
			stream(parent, &sseOut{conn: conn}, false)
		}()
		return nil
	}

	h.Set(echo.HeaderConnection, "keep-alive")
	res.WriteHeader(http.StatusOK)
	_ = http.NewResponseController(res.Writer).SetWriteDeadline(time.Time{})
	stream(c.Request().Context(), &sseOut{res: res}, true)
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
