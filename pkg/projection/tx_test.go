package projection

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/awesome-pizza/pizza/pkg/testkit"
)

type counterDoc struct {
	N     int      `json:"n"`
	Trail []string `json:"trail,omitempty"`
}

func TestTxDocumentsAreDecodedAndWrittenOncePerBatch(t *testing.T) {
	rdb, ks := testkit.Redis(t)
	ctx := context.Background()
	if err := rdb.Set(ctx, ks+"doc", `{"n":5}`, 0).Err(); err != nil {
		t.Fatal(err)
	}
	tx := &Tx{rdb: rdb, base: ks, staged: map[string]*string{}}
	first, ok, err := GetDoc[counterDoc](ctx, tx, ks+"doc")
	if err != nil || !ok || first.N != 5 {
		t.Fatalf("GetDoc = %+v, %v, %v", first, ok, err)
	}
	for i := range 100 {
		d, ok, err := GetDoc[counterDoc](ctx, tx, ks+"doc")
		if err != nil || !ok || d != first {
			t.Fatalf("event %d: GetDoc = %p (first %p), %v, %v", i, d, first, ok, err)
		}
		d.N++
		tx.PutDoc(ks+"doc", d)
	}
	// A plain Get in the batch sees the document's changes so far.
	if raw, ok, err := tx.Get(ctx, ks+"doc"); err != nil || !ok || raw != `{"n":105}` {
		t.Fatalf("Get = %q, %v, %v", raw, ok, err)
	}
	// A missing document is a new zero value.
	fresh, ok, err := GetDoc[counterDoc](ctx, tx, ks+"fresh")
	if err != nil || ok || fresh.N != 0 {
		t.Fatalf("missing GetDoc = %+v, %v, %v", fresh, ok, err)
	}
	fresh.Trail = append(fresh.Trail, "a")
	tx.PutDoc(ks+"fresh", fresh)
	// Reading one key as two types in a batch is a projector bug.
	if _, _, err := GetDoc[map[string]int](ctx, tx, ks+"doc"); err == nil {
		t.Fatal("a second type for the same key was accepted")
	}
	tx.Set(ks+"plain", "1")
	tx.Set(ks+"plain", "2")
	tx.Set(ks+"gone", "x")
	tx.Del(ks + "gone")
	tx.SAdd(ks+"set", "m")
	ops, err := tx.writes()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"SET", ks + "doc", `{"n":105}`},
		{"SET", ks + "fresh", `{"n":0,"trail":["a"]}`},
		{"DEL", ks + "gone"},
		{"SET", ks + "plain", "2"},
		{"SADD", ks + "set", "m"},
	}
	if len(ops) != len(want) {
		t.Fatalf("writes = %q, want %q", ops, want)
	}
	for i := range want {
		for j := range want[i] {
			if ops[i][j] != want[i][j] {
				t.Fatalf("write %d = %q, want %q (all: %q)", i, ops[i], want[i], ops)
			}
		}
	}
}

func TestNotifyLatestAnnouncesEachSubjectOncePerBatch(t *testing.T) {
	tx := &Tx{channel: "ch", staged: map[string]*string{}}
	built := map[string]int{}
	for i := range 5 {
		for _, subject := range []string{"a", "b"} {
			n := i
			tx.NotifyLatest(subject, func() (string, error) {
				built[subject]++
				return subject + string(rune('0'+n)), nil
			})
		}
		if i == 2 {
			tx.Notify("plain")
		}
	}
	// "a" changes last: its notification goes out after "b"'s.
	tx.NotifyLatest("a", func() (string, error) { built["a"]++; return "a5", nil })
	ops, err := tx.writes()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, op := range ops {
		if op[0] != "PUBLISH" || op[1] != "ch" {
			t.Fatalf("unexpected op %v", op)
		}
		got = append(got, op[2])
	}
	if want := []string{"plain", "b4", "a5"}; len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("published %v, want %v", got, want)
	}
	if built["a"] != 1 || built["b"] != 1 {
		t.Fatalf("payloads built %v times, want once per subject", built)
	}
}

func TestNotifyLatestDocEmbedsTheWrittenDocument(t *testing.T) {
	type note struct {
		ID  string     `json:"orderId"`
		Seq uint64     `json:"seq"`
		Doc counterDoc `json:"order"`
	}
	tx := &Tx{channel: "ch", staged: map[string]*string{}}
	d := &counterDoc{N: 3, Trail: []string{"a"}}
	tx.PutDoc("k", d)
	fell := false
	tx.NotifyLatestDoc("o\"1", "k", "orderId", 7, "order", func() any { fell = true; return nil })
	tx.NotifyLatestDoc("o2", "unwritten", "orderId", 8, "order", func() any { return note{ID: "o2", Seq: 8, Doc: counterDoc{N: 1}} })
	ops, err := tx.writes()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, op := range ops {
		if op[0] == "PUBLISH" {
			got = append(got, op[2])
		}
	}
	want1, _ := json.Marshal(note{ID: "o\"1", Seq: 7, Doc: *d})
	want2, _ := json.Marshal(note{ID: "o2", Seq: 8, Doc: counterDoc{N: 1}})
	if len(got) != 2 || got[0] != string(want1) || got[1] != string(want2) || fell {
		t.Fatalf("published %q, want %q and %q (fallback used for the written document: %t)", got, want1, want2, fell)
	}
}

// TestMissingDocumentStaysMissingWithinABatch: a document read as missing
// is missing on every read of the batch until the batch writes it, and
// missing again once the batch deletes it.
func TestMissingDocumentStaysMissingWithinABatch(t *testing.T) {
	tx := &Tx{staged: map[string]*string{}, read: map[string]*string{"k": nil}}
	for i := range 2 {
		if _, ok, err := GetDoc[counterDoc](context.Background(), tx, "k"); err != nil || ok {
			t.Fatalf("read %d of a missing document: ok %v, err %v", i+1, ok, err)
		}
	}
	tx.PutDoc("k", &counterDoc{N: 1})
	if d, ok, _ := GetDoc[counterDoc](context.Background(), tx, "k"); !ok || d.N != 1 {
		t.Fatalf("after PutDoc: %+v, %v", d, ok)
	}
	tx.Del("k")
	if _, ok, _ := GetDoc[counterDoc](context.Background(), tx, "k"); ok {
		t.Fatal("a deleted document reads as present")
	}
}
