package usageexport

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// The payload is read and written by encoding/json, except for its records,
// which are nearly all of a month's file (720,000 of them for 1,000
// instances) and have one fixed shape. For them, encodePayload appends the
// very bytes encoding/json would write, and decodePayload reads the form it
// writes directly; whatever that fast reader does not recognise (escapes,
// other spacing or key order, non-ASCII text, null) goes to encoding/json,
// so what is accepted and what it means are exactly as before. Tests check
// both directions against encoding/json.

// encodePayload writes p as one line of compact JSON, byte for byte what
// json.Marshal(p) writes.
func encodePayload(p *Payload) ([]byte, error) {
	var enc recordEncoder
	if err := enc.begin(nil, p, len(p.Records)); err != nil {
		return nil, err
	}
	for i := range p.Records {
		if err := enc.add(&p.Records[i]); err != nil {
			return nil, err
		}
	}
	return enc.finish(p)
}

// recordEncoder writes a payload with records added one by one, as they
// are read, so that a month's file is written in one buffer without
// holding its records as values. Everything before the records is known
// first; the totals, after them, are written at the end.
type recordEncoder struct {
	buf    []byte
	start  int // len(prefix)
	head   int // len(buf) after begin
	n      int
	expect int
	labels labelCache
}

// begin writes prefix (which the caller may use to sign without copying)
// and p up to its records. expect is about how many records will follow.
func (e *recordEncoder) begin(prefix []byte, p *Payload, expect int) error {
	head, at, err := marshalAroundRecords(p)
	if err != nil {
		return err
	}
	e.buf = append(append(make([]byte, 0, len(prefix)+at+4096), prefix...), head[:at]...)
	e.start, e.head, e.expect = len(prefix), len(e.buf), expect
	return nil
}

func (e *recordEncoder) add(r *Record) error {
	if e.n > 0 {
		e.buf = append(e.buf, ',')
	}
	var err error
	e.buf, err = appendRecord(e.buf, r, &e.labels)
	e.n++
	if e.n == 1 && e.expect > 1 {
		// Room for all of them, sized by the first, once.
		size := (len(e.buf) - e.head + 1) * e.expect
		e.buf = append(make([]byte, 0, len(e.buf)+size+size/8+4096), e.buf...)
	}
	return err
}

// finish writes the rest of p (its totals) after the records and returns
// the whole buffer.
func (e *recordEncoder) finish(p *Payload) ([]byte, error) {
	head, at, err := marshalAroundRecords(p)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(head[:at], e.buf[e.start:e.head]) {
		return nil, errors.New("payload: changed while its records were written")
	}
	return append(e.buf, head[at:]...), nil
}

// marshalAroundRecords marshals p without records and returns where they
// would go: just after `"records":[`.
func marshalAroundRecords(p *Payload) ([]byte, int, error) {
	q := *p
	q.Records = []Record{}
	head, err := json.Marshal(&q)
	if err != nil {
		return nil, 0, err
	}
	// `"records":[]` cannot occur inside a JSON string (its quotes would be
	// escaped), and no other member is named records.
	const empty = `"records":[]`
	at := bytes.Index(head, []byte(empty))
	if at < 0 {
		return nil, 0, errors.New("payload: no records member")
	}
	return head, at + len(empty) - 1, nil
}

// labelCache remembers the encoding of the label set last seen: the
// records of one interval share theirs.
type labelCache struct {
	m   map[string]string
	enc []byte
}

func (c *labelCache) encode(m map[string]string) ([]byte, error) {
	if c.enc != nil && sameLabels(c.m, m) {
		return c.enc, nil
	}
	enc, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	c.m, c.enc = m, enc
	return enc, nil
}

func sameLabels(a, b map[string]string) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// appendRecord appends r as encoding/json writes it: fields in declaration
// order (the embedded Shape's inline), map keys sorted, HTML-safe escaping.
func appendRecord(b []byte, r *Record, labels *labelCache) ([]byte, error) {
	b = append(b, `{"id":`...)
	b = appendString(b, r.ID)
	b = append(b, `,"uid":`...)
	b = appendString(b, r.UID)
	b = append(b, `,"start":`...)
	b = appendTime(b, r.Start)
	b = append(b, `,"end":`...)
	b = appendTime(b, r.End)
	b = append(b, `,"milliVCores":`...)
	b = strconv.AppendInt(b, r.MilliVCores, 10)
	b = append(b, `,"memoryBytes":`...)
	b = strconv.AppendInt(b, r.MemoryBytes, 10)
	b = append(b, `,"storageBytes":`...)
	b = strconv.AppendInt(b, r.StorageBytes, 10)
	b = append(b, `,"labels":`...)
	enc, err := labels.encode(r.Labels)
	if err != nil {
		return nil, err
	}
	b = append(b, enc...)
	b = append(b, `,"milliVCoreSeconds":`...)
	b = strconv.AppendInt(b, r.MilliVCoreSeconds, 10)
	b = append(b, `,"vCoreHours":`...)
	b = appendString(b, r.VCoreHours)
	return append(b, '}'), nil
}

// plain reports whether encoding/json writes s between quotes unchanged.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

func appendString(b []byte, s string) []byte {
	if plain(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	enc, _ := json.Marshal(s) // a string always marshals
	return append(b, enc...)
}

// appendTime writes t as time.Time.MarshalJSON does.
func appendTime(b []byte, t time.Time) []byte {
	if y := t.Year(); y < 0 || y > 9999 {
		enc, _ := t.MarshalJSON() // refused below by the verifier anyway
		return append(b, enc...)
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// decodePayload reads payload JSON strictly: unknown fields are an error,
// so a file from a newer format is refused rather than half understood.
func decodePayload(b []byte) (*Payload, error) {
	if p, ok := decodeFast(b); ok {
		return p, nil
	}
	return decodeStd(b)
}

// decodeStd is encoding/json's reading of a payload, the reference.
func decodeStd(b []byte) (*Payload, error) {
	var p Payload
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("payload: data after the JSON object")
	}
	return &p, nil
}

// decodeFast reads a payload written in exactly the form encodePayload
// writes: members in order, no spaces. The records are read by hand, the
// other members by encoding/json (strictly, as decodeStd would). ok is
// false when the payload is in any other form or anything is off; the
// caller then uses decodeStd, which gives the same result or the error.
func decodeFast(b []byte) (p *Payload, ok bool) {
	const open = `{"formatVersion":`
	if !bytes.HasPrefix(b, []byte(open)) || b[len(b)-1] != '}' {
		return nil, false
	}
	// Find the members' names and where the records member begins and
	// ends; every other member is small.
	want := []string{"formatVersion", "kind", "site", "controllerVersion", "generatedAt", "period", "previousExportSha256", "instances", "records", "totals", "total"}
	var keys []string
	var recs []Record
	recFrom, recTo := 0, 0
	at := 1
	for at < len(b)-1 {
		from := at
		if len(keys) > 0 {
			if b[at] != ',' {
				return nil, false
			}
			at++
		}
		key, n, ok := scanPlainString(b, at)
		if !ok || n >= len(b) || b[n] != ':' {
			return nil, false
		}
		var end int
		if key == "records" && recs == nil {
			// Read in place, not skipped first: it is nearly all of b.
			if recs, end, ok = decodeRecords(b, n+1); !ok {
				return nil, false
			}
			recFrom, recTo = from, end
		} else if end, ok = skipValue(b, n+1); !ok {
			return nil, false
		}
		keys = append(keys, key)
		at = end
	}
	if len(keys) == len(want)-1 {
		want = append(want[:5:5], want[6:]...) // a batch has no period
	}
	if at != len(b)-1 || len(keys) != len(want) {
		return nil, false
	}
	for i := range want {
		if keys[i] != want[i] {
			return nil, false
		}
	}
	// Everything but the records, read by encoding/json.
	rest := make([]byte, 0, len(b)-(recTo-recFrom))
	rest = append(append(rest, b[:recFrom]...), b[recTo:]...)
	q, err := decodeStd(rest)
	if err != nil || q.Records != nil {
		return nil, false
	}
	q.Records = recs
	return q, true
}

// scanPlainString reads a string of printable ASCII without escapes
// starting at b[at] (the opening quote); n is the index after the closing
// quote.
func scanPlainString[T string | []byte](b T, at int) (s string, n int, ok bool) {
	if at >= len(b) || b[at] != '"' {
		return "", 0, false
	}
	for i := at + 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return string(b[at+1 : i]), i + 1, true
		case c < 0x20 || c >= 0x7f || c == '\\':
			return "", 0, false
		}
	}
	return "", 0, false
}

// skipValue finds the end of the JSON value starting at b[at]: after the
// closing quote or bracket, or before the ',' or '}' that ends a number or
// literal. It checks nothing else; encoding/json or decodeRecords reads the
// value afterwards.
func skipValue(b []byte, at int) (int, bool) {
	depth := 0
	for i := at; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			if i >= len(b) {
				return 0, false
			}
			if depth == 0 {
				return i + 1, true
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i, i > at
			}
			if depth--; depth == 0 {
				return i + 1, true
			}
		case ',':
			if depth == 0 {
				return i, i > at
			}
		}
	}
	return 0, false
}

var errNotFast = errors.New("not in the writer's form")

// recordReader reads records in exactly the form appendRecord writes.
type recordReader struct {
	b        []byte
	at       int
	labels   map[string]map[string]string
	ids      []byte
	interned map[string]string
}

// decodeRecords reads the records array starting at b[at] and returns
// where it ends.
func decodeRecords(b []byte, at int) (recs []Record, end int, ok bool) {
	if at >= len(b) || b[at] != '[' {
		return nil, 0, false
	}
	// Find the closing bracket cheaply, assuming the writer's form (no
	// ']' inside a record); the strict reading below confirms it.
	if at+1 < len(b) && b[at+1] == ']' {
		return []Record{}, at + 2, true
	}
	close := bytes.Index(b[at:], []byte("}],"))
	if close < 0 {
		return nil, 0, false
	}
	close += at + 1
	r := &recordReader{b: b[at+1 : close], labels: map[string]map[string]string{}, interned: map[string]string{}}
	n := len(r.b)/300 + 1
	recs = make([]Record, 0, n)
	// Ids are read into one buffer that becomes one string, so reading a
	// record allocates no string of its own; uids and vCore-hours repeat
	// and are interned.
	r.ids = make([]byte, 0, n*2*sha256.Size)
	idEnds := make([]int, 0, n)
	for r.at < len(r.b) {
		if len(recs) > 0 && !r.lit(",") {
			return nil, 0, false
		}
		var rec Record
		if err := r.record(&rec); err != nil {
			return nil, 0, false
		}
		recs = append(recs, rec)
		idEnds = append(idEnds, len(r.ids))
	}
	ids, from := string(r.ids), 0
	for i := range recs {
		recs[i].ID, from = ids[from:idEnds[i]], idEnds[i]
	}
	return recs, close + 1, true
}

func (r *recordReader) lit(s string) bool {
	if len(r.b)-r.at < len(s) || string(r.b[r.at:r.at+len(s)]) != s {
		return false
	}
	r.at += len(s)
	return true
}

func (r *recordReader) record(rec *Record) error {
	var err error
	if !r.lit(`{"id":`) {
		return errNotFast
	}
	id, ok := r.raw()
	if !ok || !r.lit(`,"uid":`) {
		return errNotFast
	}
	r.ids = append(r.ids, id...)
	if rec.UID, err = r.intern(); err != nil || !r.lit(`,"start":`) {
		return errNotFast
	}
	if rec.Start, err = r.time(); err != nil || !r.lit(`,"end":`) {
		return errNotFast
	}
	if rec.End, err = r.time(); err != nil || !r.lit(`,"milliVCores":`) {
		return errNotFast
	}
	if rec.MilliVCores, err = r.int(); err != nil || !r.lit(`,"memoryBytes":`) {
		return errNotFast
	}
	if rec.MemoryBytes, err = r.int(); err != nil || !r.lit(`,"storageBytes":`) {
		return errNotFast
	}
	if rec.StorageBytes, err = r.int(); err != nil || !r.lit(`,"labels":`) {
		return errNotFast
	}
	if rec.Labels, err = r.labelSet(); err != nil || !r.lit(`,"milliVCoreSeconds":`) {
		return errNotFast
	}
	if rec.MilliVCoreSeconds, err = r.int(); err != nil || !r.lit(`,"vCoreHours":`) {
		return errNotFast
	}
	if rec.VCoreHours, err = r.intern(); err != nil || !r.lit(`}`) {
		return errNotFast
	}
	return nil
}

// raw reads a plain string and returns its bytes.
func (r *recordReader) raw() ([]byte, bool) {
	if r.at >= len(r.b) || r.b[r.at] != '"' {
		return nil, false
	}
	for i := r.at + 1; i < len(r.b); i++ {
		switch c := r.b[i]; {
		case c == '"':
			s := r.b[r.at+1 : i]
			r.at = i + 1
			return s, true
		case c < 0x20 || c >= 0x7f || c == '\\':
			return nil, false
		}
	}
	return nil, false
}

// intern reads a plain string, allocating it only the first time it is
// seen (while fewer than maxInterned are held).
func (r *recordReader) intern() (string, error) {
	const maxInterned = 1 << 16
	b, ok := r.raw()
	if !ok {
		return "", errNotFast
	}
	if s, ok := r.interned[string(b)]; ok {
		return s, nil
	}
	s := string(b)
	if len(r.interned) < maxInterned {
		r.interned[s] = s
	}
	return s, nil
}

func (r *recordReader) str() (string, error) {
	s, n, ok := scanPlainString(r.b, r.at)
	if !ok {
		return "", errNotFast
	}
	r.at = n
	return s, nil
}

// int reads an integer as encoding/json reads one into an int64: optional
// minus, no leading zeros, no fraction or exponent, no overflow.
func (r *recordReader) int() (int64, error) {
	i := r.at
	if i < len(r.b) && r.b[i] == '-' {
		i++
	}
	start := i
	for i < len(r.b) && r.b[i] >= '0' && r.b[i] <= '9' {
		i++
	}
	if i == start || (r.b[start] == '0' && i-start > 1) || i-start > 19 {
		return 0, errNotFast
	}
	if i < len(r.b) && (r.b[i] == '.' || r.b[i] == 'e' || r.b[i] == 'E') {
		return 0, errNotFast
	}
	v, err := strconv.ParseInt(string(r.b[r.at:i]), 10, 64)
	if err != nil {
		return 0, errNotFast
	}
	r.at = i
	return v, nil
}

// time reads "YYYY-MM-DDTHH:MM:SSZ", the only form the writer uses.
func (r *recordReader) time() (time.Time, error) {
	const n = len(`"2006-01-02T15:04:05Z"`)
	if len(r.b)-r.at < n {
		return time.Time{}, errNotFast
	}
	s := r.b[r.at : r.at+n]
	if s[0] != '"' || s[5] != '-' || s[8] != '-' || s[11] != 'T' || s[14] != ':' || s[17] != ':' || s[20] != 'Z' || s[21] != '"' {
		return time.Time{}, errNotFast
	}
	num := func(from, to int) int {
		v := 0
		for _, c := range s[from:to] {
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	y, mo, d, h, mi, se := num(1, 5), num(6, 8), num(9, 11), num(12, 14), num(15, 17), num(18, 20)
	if y < 0 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 || se > 59 {
		return time.Time{}, errNotFast
	}
	t := time.Date(y, time.Month(mo), d, h, mi, se, 0, time.UTC)
	if t.Day() != d {
		return time.Time{}, errNotFast // 31 April and the like: encoding/json refuses it
	}
	r.at += n
	return t, nil
}

// labelSet reads a flat object of plain strings. Records of one interval
// share their labels, so each distinct spelling is decoded once and the
// map shared.
func (r *recordReader) labelSet() (map[string]string, error) {
	if r.at >= len(r.b) || r.b[r.at] != '{' {
		return nil, errNotFast
	}
	end := r.at + 1
	for end < len(r.b) && r.b[end] != '}' {
		if r.b[end] == '\\' || r.b[end] < 0x20 || r.b[end] >= 0x7f {
			return nil, errNotFast
		}
		end++
	}
	if end >= len(r.b) {
		return nil, errNotFast
	}
	spelling := r.b[r.at : end+1]
	if m, ok := r.labels[string(spelling)]; ok {
		r.at = end + 1
		return m, nil
	}
	m := map[string]string{}
	sub := &recordReader{b: spelling[:len(spelling)-1], at: 1}
	for sub.at < len(sub.b) {
		if len(m) > 0 && !sub.lit(",") {
			return nil, errNotFast
		}
		k, err := sub.str()
		if err != nil || !sub.lit(":") {
			return nil, errNotFast
		}
		v, err := sub.str()
		if err != nil {
			return nil, errNotFast
		}
		if _, dup := m[k]; dup {
			return nil, errNotFast
		}
		m[k] = v
	}
	r.labels[string(spelling)] = m
	r.at = end + 1
	return m, nil
}
