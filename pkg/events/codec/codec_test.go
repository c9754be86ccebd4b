package codec

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

type line struct {
	Pizza string `json:"pizza"`
	Qty   int    `json:"qty"`
}

type doc struct {
	ID       string            `json:"id"`
	Seq      uint64            `json:"seq"`
	Price    float64           `json:"price"`
	At       time.Time         `json:"at"`
	Due      *time.Time        `json:"due"`
	Lines    []line            `json:"lines"`
	Stock    map[string]int64  `json:"stock"`
	Raw      json.RawMessage   `json:"raw"`
	Note     string            `json:"note,omitempty"`
	Flags    map[string]bool   `json:"flags,omitempty"`
	Any      any               `json:"any"`
	Nested   *doc              `json:"nested,omitempty"`
	Skipped  string            `json:"-"`
	Labels   []string          `json:"labels"`
	ByDriver map[string]string `json:"byDriver"`
}

// The decoder must decode what encoding/json decodes, to the same value,
// and refuse what it refuses: the log holds events written by every
// version of the platform.
func TestUnmarshalAgreesWithEncodingJSON(t *testing.T) {
	inputs := []string{
		`{"id":"o-1","seq":42,"price":12.5,"at":"2026-11-27T10:00:00.123456789Z","due":null,"lines":[{"pizza":"margherita","qty":2}],"stock":{"flour":-3},"raw":{"a":[1,2,{"b":null}]},"any":{"x":[1,"y",true]},"labels":[],"byDriver":{}}`,
		`{"ID":"case-insensitive","SEQ":1,"Lines":[{"PIZZA":"x","Qty":1}]}`,
		`{"id":"unknown fields are ignored","extra":{"deep":[1,2,3]},"more":"x"}`,
		`{"id":"invalid utf-8 \xff\xfe here","note":"\u00e9\ud83c\udf55"}`,
		`{"id":"escapes \" \\ \/ \b \f \n \r \t \u0000"}`,
		`{"nested":{"id":"inner","nested":{"id":"deeper"}},"raw":"a string","any":1e300}`,
		`  {"id":"whitespace"}  `,
		`{"id":"dup","id":"last wins"}`,
		`{"seq":-1}`,
		`{"seq":1.5}`,
		`{"id":1}`,
		`{"id":"trailing"} x`,
		`{"id":"unterminated"`,
		`{"id":"o",}`,
		`[1,2]`,
		`null`,
		``,
		`{"price":"12"}`,
		`{"at":"not a time"}`,
		`{"at":"2026-11-26T17:33:50,198280017Z"}`,
		`{"at":"2026-11-26\18:33:50.198280017Z"}`,
		`{"id":"\1"}`,
		`{"raw":{"a":"\q"}}`,
		`{"any":["\x"]}`,
		`{"extra":"\1","id":"skipped field with a bad escape"}`,
		`{"at":"2026-11-26t17:33:50z"}`,
		`{"at":"2026-11-26T17:33:50+01:00","due":"2026-02-30T00:00:00Z"}`,
		`{"at":"2026-11-26T17:33:50.1234567891Z"}`,
		`{"at":"0000-01-01T00:00:00Z","due":"9999-12-31T23:59:59.999999999-23:59"}`,
		`{"lines":{"pizza":"x"}}`,
	}
	for _, in := range inputs {
		var std, got doc
		stdErr := json.Unmarshal([]byte(in), &std)
		gotErr := Unmarshal([]byte(in), &got)
		if (stdErr == nil) != (gotErr == nil) {
			t.Errorf("%q: encoding/json error %v, codec error %v", in, stdErr, gotErr)
			continue
		}
		if stdErr == nil && !reflect.DeepEqual(std, got) {
			t.Errorf("%q:\n encoding/json %+v\n codec         %+v", in, std, got)
		}
	}
}

// Marshal writes what encoding/json writes, byte for byte: documents are
// compared and hashed as bytes (request fingerprints, unchanged-document
// checks).
func TestMarshalAgreesWithEncodingJSON(t *testing.T) {
	due := time.Date(2026, 11, 27, 10, 30, 0, 0, time.FixedZone("x", 3600))
	values := []any{
		doc{ID: "<html> & 'quotes' \u2028", Seq: 1 << 60, Price: 0.1 + 0.2, At: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Due: &due,
			Lines: []line{{"a", 1}}, Stock: map[string]int64{"b": 2, "a": 1}, Raw: json.RawMessage(`{"k": [1, 2]}`),
			Flags: map[string]bool{"z": true}, Any: map[string]any{"n": 1.5e-7, "s": "\xff"}, Labels: nil, ByDriver: map[string]string{}},
		doc{},
		[]float64{1, 1e21, 1e-7, 123456789.125, -0.0},
		map[string]any{"nil": nil, "empty": []int{}, "bytes": []byte("pizza")},
	}
	for _, v := range values {
		want, wantErr := json.Marshal(v)
		got, gotErr := Marshal(v)
		if (wantErr == nil) != (gotErr == nil) || string(want) != string(got) {
			t.Errorf("Marshal(%#v):\n encoding/json %s (%v)\n codec         %s (%v)", v, want, wantErr, got, gotErr)
		}
	}
}

func TestValidAgreesWithEncodingJSON(t *testing.T) {
	for _, in := range []string{`"\1"`, `{"a":"\q"}`, `{}`, `{"a":1}`, `{"a":1} x`, `{`, ``, `"\xff"`, `[1,]`, ` 1 `} {
		if got, want := Valid([]byte(in)), json.Valid([]byte(in)); got != want {
			t.Errorf("Valid(%q) = %v, encoding/json says %v", in, got, want)
		}
	}
}

func FuzzUnmarshalAgreesWithEncodingJSON(f *testing.F) {
	f.Add([]byte(`{"id":"o-1","seq":42,"lines":[{"pizza":"m","qty":2}],"raw":{"a":1}}`))
	f.Add([]byte(`{"at":"2026-11-27T10:00:00Z","any":[null,true]}`))
	f.Add([]byte(`{"at":"2026-11-27T10:00:00,5+01:00","due":"2026-11-27T10:00:00.123Z"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		var std, got doc
		stdErr := json.Unmarshal(in, &std)
		gotErr := Unmarshal(in, &got)
		if (stdErr == nil) != (gotErr == nil) {
			t.Fatalf("%q: encoding/json error %v, codec error %v", in, stdErr, gotErr)
		}
		if stdErr == nil && !reflect.DeepEqual(std, got) {
			t.Fatalf("%q:\n encoding/json %+v\n codec         %+v", in, std, got)
		}
	})
}
