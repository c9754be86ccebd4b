package gateway

import (
	"bytes"
	"strings"
	"testing"
)

// Every page gets the shared head and top bar, and no include is left
// unexpanded.
func TestPagesExpandTheirIncludes(t *testing.T) {
	for route, name := range uiPages {
		f, err := loadUIFile(name)
		if err != nil {
			t.Fatalf("%s: %v", route, err)
		}
		for _, want := range []string{`<link rel="stylesheet" href="/ui/style.css">`, `<meta name="viewport"`, `<header class="topbar">`, `id="live"`, `<a href="/driver">Driver</a>`} {
			if !bytes.Contains(f.body, []byte(want)) {
				t.Errorf("%s (%s) lacks %s", route, name, want)
			}
		}
		if bytes.Contains(f.body, []byte("<!--#include")) {
			t.Errorf("%s (%s) keeps an include", route, name)
		}
		if n := bytes.Count(f.body, []byte(`<header class="topbar">`)); n != 1 {
			t.Errorf("%s (%s) has %d top bars", route, name, n)
		}
	}
}

func TestUnknownIncludeIsAnError(t *testing.T) {
	_, err := expandIncludes("test.html", []byte("<body>\n<!--#include no-such-part-->\n</body>"))
	if err == nil || !strings.Contains(err.Error(), "no-such-part") {
		t.Fatalf("expanding an unknown partial: %v", err)
	}
	out, err := expandIncludes("test.html", []byte("<head>\n<!--#include head-->\n</head>"))
	if err != nil || !bytes.Contains(out, []byte(`<meta charset="utf-8">`+"\n")) || bytes.Contains(out, []byte("#include")) {
		t.Fatalf("expanding the head: %v\n%s", err, out)
	}
}

// The partials are not served on their own.
func TestPartialsAreNotRoutes(t *testing.T) {
	routes, err := uiRoutes()
	if err != nil {
		t.Fatal(err)
	}
	for r := range routes {
		if strings.Contains(r, "partials") {
			t.Errorf("route %s serves a partial", r)
		}
	}
}
