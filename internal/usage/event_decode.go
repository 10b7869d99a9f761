package usage

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/tollgate/tollgate/internal/billing"
)

// DecodeEvent decodes the JSON document data into e with exactly json.Unmarshal's result
// (and an error exactly when it returns one) at a fraction of the cost: the worker decodes
// every event it ingests. It reads the members AppendJSON and encoding/json write, in any
// order, and skips unknown ones; anything it is not sure of (a number with a fraction or
// an exponent, a key encoding/json would match case-insensitively, bad syntax) it leaves
// to json.Unmarshal. It takes a string because that is how Redis hands the worker an
// entry; the strings it sets may share data's memory.
func DecodeEvent(data string, e *Event) error {
	ev := *e // json.Unmarshal keeps the fields data does not set
	if decodeEventFast(data, &ev) {
		*e = ev
		return nil
	}
	// encoding/json gets a copy, which escapes to the heap, so that e (and the event the
	// caller decodes into) need not: the fast path allocates nothing.
	slow := *e
	err := json.Unmarshal([]byte(data), &slow)
	*e = slow
	return err
}

// decodeEventFast decodes data into e and reports whether it could be sure of the result;
// if not, e holds whatever it had decoded so far.
func decodeEventFast(data string, e *Event) bool {
	d := eventDecoder{s: data}
	d.space()
	ok := d.object(func(key string) bool { return d.eventMember(e, key) })
	d.space()
	return ok && d.i == len(d.s)
}

// eventDecoder reads a JSON document in one pass. Its methods report false for anything
// they cannot decode exactly as encoding/json does, including every syntax error.
type eventDecoder struct {
	s string
	i int // next byte to read
}

// maxSkipDepth bounds the nesting of the unknown values skipped; deeper ones are left to
// encoding/json, whose own limit is far higher.
const maxSkipDepth = 64

func (d *eventDecoder) eventMember(e *Event, key string) bool {
	switch key {
	case "rid":
		return d.readString(&e.RequestID)
	case "t":
		return d.readTime(&e.Time)
	case "uid":
		return d.readInt64(&e.UserID)
	case "kid":
		return d.readInt64(&e.KeyID)
	case "gid":
		return d.readInt64(&e.GroupID)
	case "aid":
		return d.readInt64(&e.AccountID)
	case "prov":
		return d.readString(&e.Provider)
	case "ep":
		return d.readString(&e.Endpoint)
	case "model":
		return d.readString(&e.ModelRequested)
	case "umodel":
		return d.readString(&e.ModelUpstream)
	case "usage":
		if d.literal("null") {
			return true
		}
		// Decoded into the struct in place: a second "usage" object updates the first's
		// fields, as with encoding/json.
		return d.object(func(key string) bool { return d.usageMember(&e.Usage, key) })
	case "official":
		return d.readInt64(&e.OfficialNano)
	case "billed":
		return d.readInt64(&e.BilledNano)
	case "fnum":
		return d.readInt64(&e.FactorNum)
	case "fden":
		return d.readInt64(&e.FactorDen)
	case "pid":
		return d.readInt64(&e.PriceID)
	case "fx":
		return d.readInt64(&e.FXRateMicro)
	case "status":
		return d.readInt(&e.Status)
	case "stream":
		return d.readBool(&e.Stream)
	case "ttfb":
		return d.readInt(&e.TTFBMillis)
	case "dur":
		return d.readInt(&e.DurationMillis)
	case "ip":
		return d.readString(&e.ClientIP)
	case "ua":
		return d.readString(&e.UserAgent)
	case "err":
		return d.readString(&e.ErrorClass)
	case "attempt":
		return d.readInt(&e.Attempt)
	case "late":
		return d.readBool(&e.Late)
	}
	return ignoredKey(key) && d.skip(0)
}

func (d *eventDecoder) usageMember(u *billing.Usage, key string) bool {
	switch key {
	case "input":
		return d.readInt64(&u.Input)
	case "output":
		return d.readInt64(&u.Output)
	case "cache_write_5m":
		return d.readInt64(&u.CacheWrite5m)
	case "cache_write_1h":
		return d.readInt64(&u.CacheWrite1h)
	case "cache_read":
		return d.readInt64(&u.CacheRead)
	case "reasoning":
		return d.readInt64(&u.Reasoning)
	}
	return ignoredKey(key) && d.skip(0)
}

// ignoredKey reports whether encoding/json surely ignores a member whose key, as written
// between the quotes, is none of the fields' names. It would still take the member for a
// field whose name the key matches case-insensitively (by Unicode folding) or once
// unescaped; as every name is lower-case ASCII, any key with an upper-case letter, an
// escape or a non-ASCII byte may be one of those.
func ignoredKey(key string) bool {
	for i := 0; i < len(key); i++ {
		if c := key[i]; 'A' <= c && c <= 'Z' || c == '\\' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// readString reads a string or null into p (null leaves it as it is, as encoding/json does).
func (d *eventDecoder) readString(p *string) bool {
	if d.literal("null") {
		return true
	}
	raw, escaped, ok := d.string()
	if !ok {
		return false
	}
	if escaped {
		raw = unquote(raw)
	}
	*p = raw
	return true
}

// readTime reads a time or null into p. encoding/json hands the string, quotes and
// escapes included, to time.Time's UnmarshalJSON, which parses what is between the quotes
// as time.Parse(time.RFC3339, …) does; strings with an escape or a non-ASCII byte, which
// it would not unescape and could not parse, are left to it.
func (d *eventDecoder) readTime(p *time.Time) bool {
	if d.literal("null") {
		return true
	}
	raw, escaped, ok := d.string()
	if !ok || escaped {
		return false
	}
	t, err := time.Parse(time.RFC3339, raw)
	if err != nil {
		return false
	}
	*p = t
	return true
}

func (d *eventDecoder) readInt64(p *int64) bool {
	if d.literal("null") {
		return true
	}
	n, ok := d.integer()
	if ok {
		*p = n
	}
	return ok
}

func (d *eventDecoder) readInt(p *int) bool {
	if d.literal("null") {
		return true
	}
	n, ok := d.integer()
	if !ok || int64(int(n)) != n {
		return false
	}
	*p = int(n)
	return true
}

func (d *eventDecoder) readBool(p *bool) bool {
	switch {
	case d.literal("null"):
	case d.literal("true"):
		*p = true
	case d.literal("false"):
		*p = false
	default:
		return false
	}
	return true
}

// integer reads an integer that fits in an int64. A fraction or an exponent after its
// digits is left unread, so the object it is in fails to parse and encoding/json decides.
func (d *eventDecoder) integer() (int64, bool) {
	start := d.i
	d.consume('-')
	digits := d.i
	if !d.digits() || d.s[digits] == '0' && d.i-digits > 1 {
		return 0, false // no digits, or a leading zero: not JSON
	}
	if d.i-digits > 18 { // might not fit
		n, err := strconv.ParseInt(d.s[start:d.i], 10, 64)
		return n, err == nil
	}
	var n int64
	for _, c := range []byte(d.s[digits:d.i]) {
		n = n*10 + int64(c-'0')
	}
	if digits > start {
		n = -n
	}
	return n, true
}

// object reads an object, handing each key (as written between its quotes) to member,
// which reads the value.
func (d *eventDecoder) object(member func(key string) bool) bool {
	if !d.consume('{') {
		return false
	}
	d.space()
	if d.consume('}') {
		return true
	}
	for {
		key, _, ok := d.string()
		if !ok {
			return false
		}
		d.space()
		if !d.consume(':') {
			return false
		}
		d.space()
		if !member(key) {
			return false
		}
		d.space()
		if d.consume('}') {
			return true
		}
		if !d.consume(',') {
			return false
		}
		d.space()
	}
}

// skip reads any JSON value, nested depth deep in the unknown member being skipped.
func (d *eventDecoder) skip(depth int) bool {
	if depth > maxSkipDepth || d.i == len(d.s) {
		return false
	}
	switch d.s[d.i] {
	case '"':
		_, _, ok := d.string()
		return ok
	case '{':
		return d.object(func(string) bool { return d.skip(depth + 1) })
	case '[':
		return d.array(depth + 1)
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.literal("null")
	}
	return d.number()
}

func (d *eventDecoder) array(depth int) bool {
	d.i++ // [
	d.space()
	if d.consume(']') {
		return true
	}
	for {
		if !d.skip(depth) {
			return false
		}
		d.space()
		if d.consume(']') {
			return true
		}
		if !d.consume(',') {
			return false
		}
		d.space()
	}
}

// number reads a number of any form JSON allows.
func (d *eventDecoder) number() bool {
	d.consume('-')
	switch {
	case d.consume('0'):
	case d.i < len(d.s) && '1' <= d.s[d.i] && d.s[d.i] <= '9':
		d.digits()
	default:
		return false
	}
	if d.consume('.') && !d.digits() {
		return false
	}
	if d.consume('e') || d.consume('E') {
		if !d.consume('+') {
			d.consume('-')
		}
		return d.digits()
	}
	return true
}

// digits reads a run of decimal digits and reports whether there was one.
func (d *eventDecoder) digits() bool {
	start := d.i
	for d.i < len(d.s) && '0' <= d.s[d.i] && d.s[d.i] <= '9' {
		d.i++
	}
	return d.i > start
}

// string reads a string and returns what is between its quotes, reporting whether that
// holds an escape or a non-ASCII byte, for unquote to decode.
func (d *eventDecoder) string() (raw string, escaped, ok bool) {
	if !d.consume('"') {
		return "", false, false
	}
	s, start := d.s, d.i
	for i := start; i < len(s); {
		switch c := s[i]; {
		case c == '"':
			d.i = i + 1
			return s[start:i], escaped, true
		case c < ' ':
			return "", false, false // control characters must be escaped
		case c == '\\':
			n := escapeLen(s[i:])
			if n == 0 {
				return "", false, false
			}
			escaped = true
			i += n
		default:
			escaped = escaped || c >= utf8.RuneSelf
			i++
		}
	}
	return "", false, false
}

// escapeLen returns the length of the backslash escape at the start of s, or 0 if it is
// not one JSON allows.
func escapeLen(s string) int {
	if len(s) < 2 {
		return 0
	}
	switch s[1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2
	case 'u':
		if u4(s) >= 0 {
			return len(`\uXXXX`)
		}
	}
	return 0
}

func (d *eventDecoder) literal(lit string) bool {
	if !strings.HasPrefix(d.s[d.i:], lit) {
		return false
	}
	d.i += len(lit)
	return true
}

func (d *eventDecoder) consume(c byte) bool {
	if d.i < len(d.s) && d.s[d.i] == c {
		d.i++
		return true
	}
	return false
}

func (d *eventDecoder) space() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// unquote decodes the inside of a well-formed JSON string as encoding/json does: each
// byte of invalid UTF-8 becomes U+FFFD, and so does a \u escape of half a surrogate pair.
func unquote(raw string) string {
	if !strings.Contains(raw, `\`) && utf8.ValidString(raw) {
		return raw
	}
	var b strings.Builder
	b.Grow(len(raw) + utf8.UTFMax)
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c == '\\' && raw[i+1] == 'u':
			r := u4(raw[i:])
			i += len(`\uXXXX`)
			if utf16.IsSurrogate(r) {
				// U+FFFD unless the pair's second half follows, which is then read too.
				r = utf16.DecodeRune(r, u4(raw[i:]))
				if r != unicode.ReplacementChar {
					i += len(`\uXXXX`)
				}
			}
			b.WriteRune(r)
		case c == '\\':
			b.WriteByte(unescape(raw[i+1]))
			i += 2
		case c < utf8.RuneSelf:
			b.WriteByte(c)
			i++
		default:
			r, size := utf8.DecodeRuneInString(raw[i:]) // utf8.RuneError for a bad byte
			b.WriteRune(r)
			i += size
		}
	}
	return b.String()
}

// unescape returns the byte a one-letter escape (after its backslash) stands for.
func unescape(c byte) byte {
	switch c {
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	}
	return c // ", \ and /
}

// u4 returns the code unit of the \uXXXX escape at the start of s, or -1 if there is none.
func u4(s string) rune {
	if len(s) < len(`\uXXXX`) || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for i := 2; i < len(`\uXXXX`); i++ {
		c := rune(s[i])
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | c
	}
	return r
}
