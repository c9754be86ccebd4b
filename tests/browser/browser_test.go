package browser

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// newBrowser starts a headless Chromium with a fresh profile. DNS resolves
// nothing but 127.0.0.1, and every tab also cuts its requests to anything
// but the gateway (see openTab).
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	if err := chromedp.Do(bctx); err != nil {
		bcancel()
		acancel()
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	t.Cleanup(func() {
		bcancel()
		acancel()
	})
	return bctx
}

// tab is one page in its own browser context (its own localStorage, so
// each page keeps its own token), with the network cut off from everything
// but the gateway, and a record of what it requested and what went wrong.
type tab struct {
	t    *testing.T
	p    *platform
	name string
	ctx  context.Context

	mu       sync.Mutex
	requests []string // every URL the page asked for
	foreign  []string // requests to anything but the gateway (failed)
	problems []string // exceptions, console errors, CSP violations, failed loads
}

func (p *platform) openTab(t *testing.T, browser context.Context, name, token string) *tab {
	t.Helper()
	tb := &tab{t: t, p: p, name: name}
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext(), chromedp.WithListener(tb.listen))
	t.Cleanup(cancel)
	tb.ctx = ctx
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("%s: opening a tab: %v", name, err)
	}
	paused := chromedp.Events(ctx, fetch.RequestPaused)
	go func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			go tb.route(ev)
		}
	}()
	steps := []error{}
	_, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: "*"}}})
	steps = append(steps, err)
	_, err = chromedp.Call(ctx, network.Enable, network.EnableParams{})
	steps = append(steps, err)
	_, err = chromedp.Call(ctx, cdplog.Enable, cdp.Empty{})
	steps = append(steps, err)
	if token != "" {
		// The pages read their bearer token from localStorage.
		_, err = chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
			Source: fmt.Sprintf("try { localStorage.setItem('pizza.token', %q) } catch (e) {}", token),
		})
		steps = append(steps, err)
	}
	if err := errors.Join(steps...); err != nil {
		t.Fatalf("%s: setting up the tab: %v", name, err)
	}
	return tb
}

// route lets requests to the gateway through and fails every other one.
func (tb *tab) route(ev fetch.EventRequestPaused) {
	u, err := url.Parse(ev.Request.URL)
	if err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host == tb.p.host() {
		_, _ = chromedp.Call(tb.ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
		return
	}
	tb.mu.Lock()
	tb.foreign = append(tb.foreign, ev.Request.URL)
	tb.mu.Unlock()
	_, _ = chromedp.Call(tb.ctx, fetch.FailRequest, fetch.FailRequestParams{RequestID: ev.RequestID, ErrorReason: network.ErrorReasonBlockedByClient})
}

func (tb *tab) listen(ev any) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		tb.requests = append(tb.requests, ev.Request.URL)
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			msg += " " + d.Exception.Description
		}
		tb.problems = append(tb.problems, fmt.Sprintf("exception: %s (%s:%d)", msg, d.URL, d.LineNumber))
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError {
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, fmt.Sprint(a.Value, a.Description))
			}
			tb.problems = append(tb.problems, "console.error: "+strings.Join(parts, " "))
		}
	case *cdplog.EventEntryAdded:
		if ev.Entry.Level == cdplog.EntryLevelError {
			tb.problems = append(tb.problems, fmt.Sprintf("%s: %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
		}
	}
}

func (tb *tab) navigate(path string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(tb.p.base+path)); err != nil {
		tb.t.Fatalf("%s: navigate %s: %v", tb.name, path, err)
	}
}

// eval runs a JavaScript expression in the page and decodes its value
// (a promise's, once it settles).
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("%s: evaluating %s: %v", tb.name, expr, err)
	}
	return v
}

// waitFor polls a boolean expression until it holds. While the page
// navigates (or the expression throws), it counts as not yet.
func (tb *tab) waitFor(what, expr string, timeout time.Duration) {
	tb.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("(() => { try { return Boolean("+expr+") } catch (e) { return false } })()"))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			tb.t.Fatalf("%s: %s did not happen within %v (last error: %v; problems: %v)", tb.name, what, timeout, err, tb.problemList())
		}
		t := time.NewTimer(100 * time.Millisecond)
		<-t.C
	}
}

func (tb *tab) ready() {
	tb.t.Helper()
	tb.waitFor("the page to load its data", `document.body.dataset.ready === 'true'`, 20*time.Second)
}

func (tb *tab) click(sel string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		tb.t.Fatalf("%s: click %s: %v", tb.name, sel, err)
	}
}

// choose sets a <select> and tells the page, as a person picking would.
func (tb *tab) choose(sel, value string) {
	tb.t.Helper()
	ok := eval[bool](tb, fmt.Sprintf(`(() => { const s = document.querySelector(%q); if (!s || ![...s.options].some(o => o.value === %q)) return false; s.value = %q; s.dispatchEvent(new Event('change', {bubbles: true})); return true; })()`, sel, value, value))
	if !ok {
		tb.t.Fatalf("%s: %s has no option %q", tb.name, sel, value)
	}
}

func (tb *tab) screenshot(dir, name string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.t.Errorf("%s: screenshot: %v", tb.name, err)
		return
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		tb.t.Errorf("%s: writing %s: %v", tb.name, path, err)
		return
	}
	tb.t.Logf("screenshot %s", path)
}

// viewport resizes the page (a phone, a tablet).
func (tb *tab) viewport(w, h int64, mobile bool) {
	tb.t.Helper()
	var opts []chromedp.EmulateViewportOption
	if mobile {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch)
	}
	if err := chromedp.Do(tb.ctx, chromedp.EmulateViewport(w, h, opts...)); err != nil {
		tb.t.Fatalf("%s: viewport: %v", tb.name, err)
	}
}

func (tb *tab) problemList() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.problems...)
}

// assertOffline checks that the page asked the gateway only, and that
// nothing failed in it (no exception, no CSP violation, no failed load).
func (tb *tab) assertOffline() {
	tb.t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if len(tb.foreign) > 0 {
		tb.t.Errorf("%s: requests left the gateway's origin: %v", tb.name, tb.foreign)
	}
	if len(tb.requests) == 0 {
		tb.t.Errorf("%s: the page made no request at all", tb.name)
	}
	for _, u := range tb.requests {
		if !strings.HasPrefix(u, tb.p.base+"/") {
			tb.t.Errorf("%s: requested %s, outside the gateway", tb.name, u)
		}
	}
	if len(tb.problems) > 0 {
		tb.t.Errorf("%s: problems in the page: %v", tb.name, tb.problems)
	}
}

// chromedpNavigate navigates and returns the error instead of failing.
func chromedpNavigate(tb *tab, u string) error {
	ctx, cancel := context.WithTimeout(tb.ctx, 15*time.Second)
	defer cancel()
	return chromedp.Do(ctx, chromedp.Navigate(u))
}
