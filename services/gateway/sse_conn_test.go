package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/gateway"
)

// rawStream is an SSE request written and read on a bare TCP connection,
// so the test sees the response head exactly as it went on the wire.
type rawStream struct {
	conn   net.Conn
	r      *bufio.Reader
	status string
	header http.Header
}

func openRaw(t *testing.T, h *harness, path string) *rawStream {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: gateway\r\nAccept: text/event-stream\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	s := &rawStream{conn: conn, r: bufio.NewReader(conn), header: http.Header{}}
	status, err := s.r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the status line: %v", err)
	}
	s.status = strings.TrimSpace(status)
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the head: %v", err)
		}
		line = strings.TrimSpace(line)
		if line == "" {
			return s
		}
		k, v, _ := strings.Cut(line, ":")
		s.header.Add(k, strings.TrimSpace(v))
	}
}

// until reads lines until one starts with prefix.
func (s *rawStream) until(t *testing.T, prefix string) string {
	t.Helper()
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream while waiting for %q: %v", prefix, err)
		}
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
}

// TestStreamTakesItsConnectionOver checks the HTTP/1.1 stream that runs
// outside its handler (ADR 0022): its head carries the middleware's
// headers and ends the body with the connection (no chunking), frames
// arrive, a client that leaves frees its stream slot at once (the
// heartbeat is an hour away, so only the connection's reader can notice),
// and CloseStreams ends the stream.
func TestStreamTakesItsConnectionOver(t *testing.T) {
	h := startPlatform(t, gateway.Config{MaxStreamsPerUser: 1, Heartbeat: time.Hour})
	o := h.placeOrder(t, "cust-takeover")
	path := "/api/orders/" + o.OrderID + "/track"

	s := openRaw(t, h, path)
	if s.status != "HTTP/1.1 200 OK" {
		t.Fatalf("status line %q", s.status)
	}
	for k, want := range map[string]string{"Content-Type": "text/event-stream", "Connection": "close", "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"} {
		if got := s.header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"Transfer-Encoding", "Content-Length"} {
		if v := s.header.Get(k); v != "" {
			t.Errorf("header %s = %q: the body must end with the connection", k, v)
		}
	}
	if s.header.Get(gateway.HeaderRequestID) == "" {
		t.Errorf("no %s header: the middleware's headers were lost", gateway.HeaderRequestID)
	}
	s.until(t, "retry: 2000")
	if got, want := s.until(t, "id: "), fmt.Sprintf("id: %d\n", o.Version); got != want {
		t.Errorf("first frame %q, want %q", got, want)
	}
	s.until(t, "data: {")

	// The only slot is taken: a second stream is refused.
	second := h.do(t, call{name: "second stream", method: http.MethodGet, path: path, want: http.StatusTooManyRequests})
	_ = second

	// The client leaves; its slot comes back without any write.
	_ = s.conn.Close()
	var again *rawStream
	testkit.Eventually(t, 10*time.Second, func() error {
		r := openRaw(t, h, path)
		if r.status != "HTTP/1.1 200 OK" {
			_ = r.conn.Close()
			return fmt.Errorf("a new stream: %s", r.status)
		}
		again = r
		return nil
	})
	again.until(t, "id: ")

	h.gw.CloseStreams()
	_ = again.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if rest, err := io.ReadAll(again.r); err != nil {
		t.Fatalf("the stream did not end after CloseStreams: %v (read %q)", err, rest)
	}
}

// TestStreamsInHandler checks the stream that stays inside its handler
// (as on HTTP/2): a chunked response with the same frames.
func TestStreamsInHandler(t *testing.T) {
	h := startPlatform(t, gateway.Config{StreamsInHandler: true, Heartbeat: 50 * time.Millisecond})
	o := h.placeOrder(t, "cust-in-handler")
	s := openRaw(t, h, "/api/orders/"+o.OrderID+"/track")
	if s.status != "HTTP/1.1 200 OK" || s.header.Get("Transfer-Encoding") != "chunked" {
		t.Fatalf("status %q, Transfer-Encoding %q: want a chunked 200", s.status, s.header.Get("Transfer-Encoding"))
	}
	st := h.openStream(t, "in handler", o.OrderID, nil, "")
	if f := h.nextOrder(t, st); f.order.OrderID != o.OrderID {
		t.Fatalf("order frame for %s, want %s", f.order.OrderID, o.OrderID)
	}
	st.heartbeatBeforeAnyOrder(t)
}

// TestTakenOverStreamSendsHeartbeats: a taken-over stream with nothing to
// say sends heartbeat comments, one per interval of silence.
func TestTakenOverStreamSendsHeartbeats(t *testing.T) {
	h := startPlatform(t, gateway.Config{Heartbeat: 100 * time.Millisecond})
	o := h.placeOrder(t, "cust-heartbeat")
	s := openRaw(t, h, "/api/orders/"+o.OrderID+"/track")
	if s.header.Get("Connection") != "close" {
		t.Fatalf("the stream was not taken over: Connection %q", s.header.Get("Connection"))
	}
	s.until(t, "id: ")
	for range 3 {
		s.until(t, ": heartbeat")
	}
}

// TestStreamOverHTTP2StaysInItsHandler: an HTTP/2 connection cannot be
// taken over; the stream runs inside its handler and works the same.
func TestStreamOverHTTP2StaysInItsHandler(t *testing.T) {
	h := startPlatform(t, gateway.Config{Heartbeat: 100 * time.Millisecond})
	o := h.placeOrder(t, "cust-h2")
	srv := httptest.NewUnstartedServer(h.gw.Handler())
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/orders/"+o.OrderID+"/track", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%s %d %q: want an HTTP/2 event stream", resp.Proto, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &rawStream{r: bufio.NewReader(resp.Body)}
	if got, want := s.until(t, "id: "), fmt.Sprintf("id: %d\n", o.Version); got != want {
		t.Errorf("first frame %q, want %q", got, want)
	}
	s.until(t, ": heartbeat")
}
