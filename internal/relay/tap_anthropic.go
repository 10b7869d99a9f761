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
// responses. Pointers tell "absent" (keep the earlier value) from zero.
type anthropicUsage struct {
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
	*a = anthropicUsage{}
	return json.Unmarshal(obj, a) == nil
}

// scan reads the members as integers, in one pass; false if one is not a plain integer.
func (a *anthropicUsage) scan(obj []byte) bool {
	ok := true
	num := func(v []byte) *int64 {
		if string(v) == "null" {
			return nil
		}
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			ok = false
			return nil
		}
		return &n
	}
	eachMember(obj, func(key, v []byte) bool {
		switch string(key) {
		case "input_tokens":
			a.InputTokens = num(v)
		case "output_tokens":
			a.OutputTokens = num(v)
		case "cache_creation_input_tokens":
			a.CacheCreationInputTokens = num(v)
		case "cache_read_input_tokens":
			a.CacheReadInputTokens = num(v)
		case "cache_creation":
			switch {
			case string(v) == "null":
			case v[0] != '{':
				ok = false
			default:
				a.CacheCreation = &cacheCreation{}
				eachMember(v, func(key, v []byte) bool {
					var p *int64
					switch string(key) {
					case "ephemeral_5m_input_tokens":
						p = &a.CacheCreation.Ephemeral5m
					case "ephemeral_1h_input_tokens":
						p = &a.CacheCreation.Ephemeral1h
					default:
						return true
					}
					if n := num(v); n != nil {
						*p = *n
					}
					return true
				})
			}
		}
		return ok
	})
	return ok
}

func (a *anthropicUsage) apply(u *billing.Usage) {
	if a.InputTokens != nil {
		u.Input = *a.InputTokens
	}
	if a.OutputTokens != nil {
		u.Output = *a.OutputTokens
	}
	if a.CacheReadInputTokens != nil {
		u.CacheRead = *a.CacheReadInputTokens
	}
	switch {
	case a.CacheCreation != nil:
		u.CacheWrite5m, u.CacheWrite1h = a.CacheCreation.Ephemeral5m, a.CacheCreation.Ephemeral1h
		// A total that disagrees with the split (older API versions) bills the rest at 5m.
		if a.CacheCreationInputTokens != nil && *a.CacheCreationInputTokens > u.CacheWrite5m+u.CacheWrite1h {
			u.CacheWrite5m = *a.CacheCreationInputTokens - u.CacheWrite1h
		}
	case a.CacheCreationInputTokens != nil:
		// message_delta repeats only the total; keep an earlier 5m/1h split that matches it.
		if *a.CacheCreationInputTokens != u.CacheWrite5m+u.CacheWrite1h {
			u.CacheWrite5m, u.CacheWrite1h = *a.CacheCreationInputTokens, 0
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
