package usageexport

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// randomPayload builds a payload whose strings, labels and times range
// from the ordinary to what needs escaping.
// ordinary payloads have only what a controller writes: plain text and
// whole seconds.
func randomPayload(rng *rand.Rand, n int, ordinary bool) *Payload {
	words := []string{"", "plant", "team-a", "a<b>&c", `quo"te`, `back\\slash`, "tab\there", "ünïcode", "\u2028", "x\x00y", "\xff", "x}],y", "a]b"}
	if ordinary {
		words = words[:3]
	}
	word := func() string { return words[rng.IntN(len(words))] }
	labels := func() map[string]string {
		m := map[string]string{}
		for range rng.IntN(4) {
			m[word()+word()] = word()
		}
		return m
	}
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	p := &Payload{FormatVersion: 1, Kind: KindBatch, Site: SiteInfo{ID: "ab", Name: word(), Labels: labels()},
		ControllerVersion: "v1", GeneratedAt: base, Instances: []Instance{{UID: "u", CreatedAt: base}},
		Totals: []InstanceTotal{}, Records: []Record{}}
	if rng.IntN(2) == 0 {
		p.Kind, p.Period = KindMonthlyExport, &Period{Month: "2026-11", Start: base, End: base.AddDate(0, 1, 0), CoveredUntil: base}
	}
	shared := labels()
	for i := range n {
		start := base.Add(time.Duration(rng.IntN(1e6)) * time.Second)
		if !ordinary && rng.IntN(10) == 0 {
			start = start.Add(time.Duration(rng.IntN(1e9))) // fractional seconds
		}
		r := Record{ID: word() + "id", UID: word(), Start: start, End: start.Add(time.Hour),
			Shape:             Shape{MilliVCores: rng.Int64N(1e6) - 10, MemoryBytes: rng.Int64(), StorageBytes: int64(i), Labels: shared},
			MilliVCoreSeconds: rng.Int64N(1 << 40), VCoreHours: VCoreHours(rng.Int64N(1 << 40))}
		if rng.IntN(5) == 0 {
			r.Labels = labels()
		}
		p.Records = append(p.Records, r)
	}
	return p
}

func TestPayloadEncoderWritesExactlyWhatEncodingJSONWrites(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 300 {
		p := randomPayload(rng, rng.IntN(20), i%2 == 0)
		want, err := json.Marshal(p)
		must(t, err)
		got, err := encodePayload(p)
		must(t, err)
		if !bytes.Equal(got, want) {
			t.Fatalf("payload %d:\nencodePayload %s\njson.Marshal  %s", i, got, want)
		}
	}
}

func TestPayloadDecoderReadsWhatEncodingJSONReads(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 300 {
		ordinary := i%2 == 0
		b, err := json.Marshal(randomPayload(rng, rng.IntN(20), ordinary))
		must(t, err)
		if _, fast := decodeFast(b); ordinary && !fast {
			t.Fatalf("the fast reader did not take an ordinary payload: %.300s", b)
		}
		for _, in := range [][]byte{b, bytes.Replace(b, []byte(`"records":[{`), []byte(`"records":[ {`), 1),
			bytes.Replace(b, []byte(`"milliVCores":`), []byte(`"MilliVCores":`), 1), append(b, ' ')} {
			sameAsStd(t, in)
		}
	}
}

// sameAsStd fails unless decodePayload gives what encoding/json gives.
func sameAsStd(t *testing.T, in []byte) {
	t.Helper()
	want, wantErr := decodeStd(in)
	got, err := decodePayload(in)
	if (err == nil) != (wantErr == nil) || (err == nil && !reflect.DeepEqual(got, want)) {
		t.Fatalf("decodePayload and encoding/json differ on %s:\n%+v, %v\n%+v, %v", in, got, err, want, wantErr)
	}
}

// FuzzPayloadDecoder: whatever the bytes, decodePayload agrees with
// encoding/json.
func FuzzPayloadDecoder(f *testing.F) {
	rng := rand.New(rand.NewPCG(7, 8))
	for range 5 {
		b, _ := json.Marshal(randomPayload(rng, 3, rng.IntN(2) == 0))
		f.Add(b)
	}
	f.Add([]byte(strings.Repeat("[", 10)))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		sameAsStd(t, in)
	})
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestCheckPayloadRefusesARecordListedTwiceInAnyOrder(t *testing.T) {
	pub := make([]byte, 32)
	site := SiteID(pub)
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	inst := Instance{UID: "u1", Kind: "PostgresInstance", Namespace: "default", Name: "a", CreatedAt: base}
	shape := Shape{MilliVCores: 1000, Labels: map[string]string{}}
	a := newRecord(site, inst, base, base.Add(time.Hour), shape)
	b := newRecord(site, inst, base.Add(time.Hour), base.Add(2*time.Hour), shape)
	other := newRecord(site, inst, base, base.Add(time.Hour), Shape{MilliVCores: 500, Labels: map[string]string{}})
	for _, tc := range []struct {
		recs []Record
		ok   bool
	}{
		{[]Record{a, b}, true},
		{[]Record{b, a}, true},
		{[]Record{a, other}, true}, // same start, another shape: a batch may say so
		{[]Record{a, b, a}, false},
		{[]Record{b, a, other, a}, false},
	} {
		p := &Payload{FormatVersion: 1, Kind: KindBatch, Site: SiteInfo{ID: site}, Instances: []Instance{inst}, Records: tc.recs}
		p.Totals, p.Total = totals(tc.recs)
		err := CheckPayload(p, pub)
		if (err == nil) != tc.ok || (err != nil && !strings.Contains(err.Error(), "appears twice")) {
			t.Errorf("records %v: %v, want ok=%v", len(tc.recs), err, tc.ok)
		}
	}
}
