package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// WebSocketListener serves MQTT over WebSocket (subprotocol "mqtt", binary
// frames) on a listener the caller opened, so that its real address is
// known (mochi's own WebSocket listener binds only when it serves).
// Browsers authenticate in CONNECT like every device; the origin is not
// checked because no cookie grants anything.
type WebSocketListener struct {
	id        string
	ln        net.Listener
	srv       *http.Server
	upgrader  websocket.Upgrader
	establish listeners.EstablishFn
	log       *slog.Logger
	closed    atomic.Bool
	mu        sync.Mutex
}

// NewWebSocketListener returns a listener serving on ln.
func NewWebSocketListener(id string, ln net.Listener) *WebSocketListener {
	l := &WebSocketListener{id: id, ln: ln, upgrader: websocket.Upgrader{
		Subprotocols:    []string{"mqtt"},
		CheckOrigin:     func(*http.Request) bool { return true },
		ReadBufferSize:  4096,
		WriteBufferSize: 4096,
	}}
	mux := http.NewServeMux()
	mux.HandleFunc("/", l.handle)
	l.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return l
}

// ID returns the listener id.
func (l *WebSocketListener) ID() string { return l.id }

// Address returns the bound address.
func (l *WebSocketListener) Address() string { return l.ln.Addr().String() }

// Protocol returns "ws".
func (l *WebSocketListener) Protocol() string { return "ws" }

// Init keeps the broker's logger.
func (l *WebSocketListener) Init(log *slog.Logger) error { l.log = log; return nil }

// Serve serves until Close.
func (l *WebSocketListener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	l.establish = establish
	l.mu.Unlock()
	if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !l.closed.Load() {
		l.log.Error("websocket listener stopped", "err", err)
	}
}

// Close stops accepting and closes the listener's clients, the first time
// only, as Mochi's own listeners do (a second Close, from the broker's
// Close after mqttbridge.CloseBroker, does nothing).
func (l *WebSocketListener) Close(closeClients listeners.CloseFn) {
	if l.closed.CompareAndSwap(false, true) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = l.srv.Shutdown(ctx)
		closeClients(l.id)
	}
}

func (l *WebSocketListener) handle(w http.ResponseWriter, r *http.Request) {
	c, err := l.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	l.mu.Lock()
	establish := l.establish
	l.mu.Unlock()
	if err := establish(l.id, &wsConn{Conn: c.UnderlyingConn(), ws: c}); err != nil {
		l.log.Debug("websocket client ended", "err", err)
	}
}

// wsConn is a WebSocket connection as a byte stream of binary frames.
type wsConn struct {
	net.Conn
	ws *websocket.Conn
	r  io.Reader
	wm sync.Mutex
}

var errNotBinary = errors.New("websocket: MQTT needs binary frames")

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			op, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, errNotBinary
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.wm.Lock()
	defer c.wm.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error { return c.ws.Close() }
