package relay

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/tollgate/tollgate/internal/billing"
)

// anthropicTap reads an Anthropic Messages SSE stream once, line by line, as it passes
// to the client, and keeps the usage it reports. Only message_start, message_delta and
// error events are decoded; content deltas are skipped after a glance at the event line.
//
// Usage rules (Anthropic): message_start carries input, cache and an initial output
// count, with the cache-creation split by TTL; message_delta carries CUMULATIVE totals,
// so a later value replaces an earlier one. A stream cut before message_delta is billed
// for what message_start reported.
type anthropicTap struct {
	event     []byte // current event name
	usage     billing.Usage
	sawUsage  bool
	stopped   bool   // message_stop seen
	errorType string // type of an in-stream error event
	pending   []byte // a data line longer than the read buffer, being assembled
}

var (
	prefixEvent = []byte("event:")
	prefixData  = []byte("data:")
)

// Line consumes one line including its newline. partial is true when the line continues
// in the next call (it was longer than the reader's buffer).
func (t *anthropicTap) Line(line []byte, partial bool) {
	line, ok := assemble(&t.pending, line, partial)
	if !ok {
		return
	}
	line = bytes.TrimRight(line, "\r\n")
	switch {
	case len(line) == 0:
		t.event = t.event[:0]
	case bytes.HasPrefix(line, prefixEvent):
		t.event = append(t.event[:0], bytes.TrimSpace(line[len(prefixEvent):])...)
	case bytes.HasPrefix(line, prefixData):
		t.data(bytes.TrimSpace(line[len(prefixData):]))
	}
}

func (t *anthropicTap) data(d []byte) {
	name := string(t.event) // no allocation: compared, not kept
	if name == "" {
		// A stream without event lines: take the type from the payload.
		name = peekType(d)
	}
	switch name {
	case "message_start":
		var u anthropicUsage
		if validJSON(d) && u.decode(memberValue(memberValue(d, "message"), "usage")) {
			u.apply(&t.usage)
			t.sawUsage = true
		}
	case "message_delta":
		var u anthropicUsage
		if validJSON(d) && u.decode(memberValue(d, "usage")) {
			u.apply(&t.usage)
			t.sawUsage = true
		}
	case "message_stop":
		t.stopped = true
	case "error":
		var m struct {
			Error struct {
				Type string `json:"type"`
			} `json:"error"`
		}
		json.Unmarshal(d, &m) //nolint:errcheck // best effort: the class is informational
		t.errorType = m.Error.Type
		if t.errorType == "" {
			t.errorType = "error"
		}
	}
}

// anthropicUsage is the usage object of message_start, message_delta and non-streaming
// responses: the members present (has) and their values. An absent member keeps the
// earlier value; a present zero sets zero.
type anthropicUsage struct {
	input, output, cacheWrite, cacheRead int64
	cc                                   cacheCreation
	has                                  uint8
}

const (
	hasInput uint8 = 1 << iota
	hasOutput
	hasCacheWrite // cache_creation_input_tokens, the total
	hasCacheRead
	hasCacheCreation // the 5m/1h split
)

// anthropicUsageJSON is the same object for encoding/json, which decides what the scan
// does not read; pointers tell "absent" from zero.
type anthropicUsageJSON struct {
	InputTokens              *int64         `json:"input_tokens"`
	OutputTokens             *int64         `json:"output_tokens"`
	CacheCreationInputTokens *int64         `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     *int64         `json:"cache_read_input_tokens"`
	CacheCreation            *cacheCreation `json:"cache_creation"`
}

type cacheCreation struct {
	Ephemeral5m int64 `json:"ephemeral_5m_input_tokens"`
	Ephemeral1h int64 `json:"ephemeral_1h_input_tokens"`
}

func (j *anthropicUsageJSON) usage() anthropicUsage {
	var a anthropicUsage
	set := func(p *int64, dst *int64, bit uint8) {
		if p != nil {
			*dst, a.has = *p, a.has|bit
		}
	}
	set(j.InputTokens, &a.input, hasInput)
	set(j.OutputTokens, &a.output, hasOutput)
	set(j.CacheCreationInputTokens, &a.cacheWrite, hasCacheWrite)
	set(j.CacheReadInputTokens, &a.cacheRead, hasCacheRead)
	if j.CacheCreation != nil {
		a.cc, a.has = *j.CacheCreation, a.has|hasCacheCreation
	}
	return a
}

// decode reads a usage object (false when absent, null or malformed). Plain integers,
// all the API sends, are read by a scan per member: a reflective decode was 2–6 µs of
// every request. Anything else goes to encoding/json, which decides.
func (a *anthropicUsage) decode(obj []byte) bool {
	if len(obj) == 0 || obj[0] != '{' || !validJSON(obj) {
		return false
	}
	if a.scan(obj) {
		return true
	}
	var j anthropicUsageJSON
	if json.Unmarshal(obj, &j) != nil {
		*a = anthropicUsage{}
		return false
	}
	*a = j.usage()
	return true
}

// scan reads the members as integers, in one pass, without allocating; false if one is
// not a plain integer.
func (a *anthropicUsage) scan(obj []byte) bool {
	ok := true
	num := func(v []byte, dst *int64, bit uint8) {
		if string(v) == "null" {
			a.has &^= bit // as encoding/json: null leaves the pointer nil
			return
		}
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			ok = false
			return
		}
		*dst, a.has = n, a.has|bit
	}
	eachMember(obj, func(key, v []byte) bool {
		switch string(key) {
		case "input_tokens":
			num(v, &a.input, hasInput)
		case "output_tokens":
			num(v, &a.output, hasOutput)
		case "cache_creation_input_tokens":
			num(v, &a.cacheWrite, hasCacheWrite)
		case "cache_read_input_tokens":
			num(v, &a.cacheRead, hasCacheRead)
		case "cache_creation":
			switch {
			case string(v) == "null":
				a.has &^= hasCacheCreation
			case v[0] != '{':
				ok = false
			default:
				a.cc, a.has = cacheCreation{}, a.has|hasCacheCreation
				eachMember(v, func(key, v []byte) bool {
					var p *int64
					switch string(key) {
					case "ephemeral_5m_input_tokens":
						p = &a.cc.Ephemeral5m
					case "ephemeral_1h_input_tokens":
						p = &a.cc.Ephemeral1h
					default:
						return true
					}
					if string(v) == "null" {
						return true // a null leaves a plain int64 as it was
					}
					n, err := strconv.ParseInt(string(v), 10, 64)
					if err != nil {
						ok = false
						return false
					}
					*p = n
					return true
				})
			}
		}
		return ok
	})
	return ok
}

func (a *anthropicUsage) apply(u *billing.Usage) {
	if a.has&hasInput != 0 {
		u.Input = a.input
	}
	if a.has&hasOutput != 0 {
		u.Output = a.output
	}
	if a.has&hasCacheRead != 0 {
		u.CacheRead = a.cacheRead
	}
	total := a.has&hasCacheWrite != 0
	switch {
	case a.has&hasCacheCreation != 0:
		u.CacheWrite5m, u.CacheWrite1h = a.cc.Ephemeral5m, a.cc.Ephemeral1h
		// A total that disagrees with the split (older API versions) bills the rest at 5m.
		if total && a.cacheWrite > u.CacheWrite5m+u.CacheWrite1h {
			u.CacheWrite5m = a.cacheWrite - u.CacheWrite1h
		}
	case total:
		// message_delta repeats only the total; keep an earlier 5m/1h split that matches it.
		if a.cacheWrite != u.CacheWrite5m+u.CacheWrite1h {
			u.CacheWrite5m, u.CacheWrite1h = a.cacheWrite, 0
		}
	}
}

// peekType returns the "type" of a JSON object whose type comes first, as Anthropic's do.
func peekType(d []byte) string {
	const p = `{"type":"`
	if !bytes.HasPrefix(d, []byte(p)) {
		var m struct {
			Type string `json:"type"`
		}
		json.Unmarshal(d, &m) //nolint:errcheck
		return m.Type
	}
	rest := d[len(p):]
	if i := bytes.IndexByte(rest, '"'); i >= 0 {
		return string(rest[:i])
	}
	return ""
}

// anthropicBodyUsage reads the usage of a non-streaming response.
func anthropicBodyUsage(body []byte) (billing.Usage, bool) {
	var au anthropicUsage
	var u billing.Usage
	if !au.decode(memberValue(body, "usage")) {
		return u, false
	}
	au.apply(&u)
	return u, true
}

func (t *anthropicTap) Usage() (billing.Usage, bool)      { return t.usage, t.sawUsage }
func (t *anthropicTap) UsageSoFar() (billing.Usage, bool) { return t.usage, t.sawUsage }
func (t *anthropicTap) Finished() bool                    { return t.stopped }
func (t *anthropicTap) ErrorType() string                 { return t.errorType }
