package relay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// sniffed is what routing needs from a request body, found in one pass over the top-level
// object without decoding the rest. The original bytes are forwarded.
type sniffed struct {
	Model      string
	Stream     bool
	modelStart int // span of the model value in the body (for model mapping)
	modelEnd   int
	Metadata   []byte // raw metadata object, if any (sticky-session hints)
	System     []byte // raw system value, if any
	FirstMsg   []byte // raw first element of messages (input, contents), if any
	Hints      []byte // raw prompt_cache_key / previous_response_id (OpenAI session hints)
	// stream_options (OpenAI chat) and where it is, for asking upstream for usage.
	streamOptions  []byte
	soStart, soEnd int
	objEnd         int // index of the top-level closing brace
}

// sniff validates body as JSON and reads model, stream and metadata from its top level.
func sniff(body []byte) (sniffed, error) {
	var s sniffed
	if !utf8.Valid(body) {
		return s, errors.New("request body is not valid UTF-8")
	}
	if !validJSON(body) {
		var v any
		err := json.Unmarshal(body, &v) // only to explain what is wrong
		return s, fmt.Errorf("request body is not valid JSON: %v", err)
	}
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return s, errors.New("request body must be a JSON object")
	}
	i++
	for {
		i = skipSpace(body, i)
		if body[i] == '}' {
			s.objEnd = i
			return s, nil
		}
		if body[i] == ',' {
			i = skipSpace(body, i+1)
		}
		keyStart := i
		i = skipString(body, i)
		key := body[keyStart+1 : i-1] // raw; the keys we want contain no escapes
		i = skipSpace(body, i)
		i = skipSpace(body, i+1) // ':'
		valStart := i
		i = skipValue(body, i)
		val := body[valStart:i]
		switch string(key) {
		case "model":
			if val[0] != '"' {
				return s, errors.New("model must be a string")
			}
			if bytes.IndexByte(val, '\\') < 0 {
				// Valid JSON and UTF-8 already: without escapes the name is the bytes
				// between the quotes (what encoding/json would decode, for less).
				s.Model = string(val[1 : len(val)-1])
			} else if err := json.Unmarshal(val, &s.Model); err != nil {
				return s, fmt.Errorf("model: %v", err)
			}
			s.modelStart, s.modelEnd = valStart, i
		case "stream":
			s.Stream = string(val) == "true"
		case "metadata":
			if val[0] == '{' {
				s.Metadata = val
			}
		case "system", "instructions", "systemInstruction":
			s.System = val
		case "prompt_cache_key", "previous_response_id":
			s.Hints = append(s.Hints, val...)
		case "stream_options":
			s.streamOptions, s.soStart, s.soEnd = val, valStart, i
		case "messages", "input", "contents":
			if val[0] == '[' {
				if j := skipSpace(val, 1); j < len(val) && val[j] != ']' {
					s.FirstMsg = val[j:skipValue(val, j)]
				}
			}
		}
	}
}

// withModel returns body with the model value replaced (model mapping, a documented edit).
func (s *sniffed) withModel(body []byte, model string) []byte {
	q, _ := json.Marshal(model)
	out := make([]byte, 0, len(body)+len(q))
	out = append(out, body[:s.modelStart]...)
	out = append(out, q...)
	return append(out, body[s.modelEnd:]...)
}

// withStreamUsage asks a Chat Completions stream for its usage chunk: it sets
// stream_options.include_usage, adding stream_options when absent. The second result is
// false when the client had asked for usage itself (nothing to edit, nothing to strip).
func (s *sniffed) withStreamUsage(body []byte) ([]byte, bool) {
	if s.streamOptions == nil {
		out := make([]byte, 0, len(body)+40)
		out = append(out, body[:s.objEnd]...)
		sep := []byte(",")
		if j := skipSpaceBack(body, s.objEnd-1); j >= 0 && body[j] == '{' {
			sep = nil // an empty object
		}
		out = append(out, sep...)
		out = append(out, `"stream_options":{"include_usage":true}`...)
		return append(out, body[s.objEnd:]...), true
	}
	var opts map[string]json.RawMessage
	if json.Unmarshal(s.streamOptions, &opts) != nil || opts == nil {
		opts = map[string]json.RawMessage{}
	}
	if string(opts["include_usage"]) == "true" {
		return body, false
	}
	opts["include_usage"] = json.RawMessage("true")
	merged, _ := json.Marshal(opts)
	out := make([]byte, 0, len(body)+24)
	out = append(out, body[:s.soStart]...)
	out = append(out, merged...)
	return append(out, body[s.soEnd:]...), true
}

func skipSpaceBack(b []byte, i int) int {
	for i >= 0 && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i--
	}
	return i
}

// decodeMember decodes the member name (compared as written: no upstream escapes a key)
// of the top-level JSON object body into dst,
// without decoding the rest of body: reading a response's usage this way costs a scan
// instead of a full decode. It reports false when body is not an object, the member is
// absent or null, or its value does not decode.
func decodeMember(body []byte, name string, dst any) bool {
	v := memberValue(body, name)
	if v == nil || string(v) == "null" {
		return false
	}
	return json.Unmarshal(v, dst) == nil
}

// memberValue returns the raw value of the member name of the top-level object, or nil.
func memberValue(body []byte, name string) []byte {
	var found []byte
	eachMember(body, func(key, val []byte) bool {
		if string(key) == name {
			found = val
			return false
		}
		return true
	})
	return found
}

// eachMember calls fn with the raw key (unescaped quotes removed, escapes left as they
// are) and raw value of each member of the top-level object, until fn returns false.
// body need not be valid JSON: every index is checked, the scan stops at the first thing
// out of place, and the values it yields are decoded (so validated) by the caller.
func eachMember(body []byte, fn func(key, val []byte) bool) {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return
	}
	i++
	for {
		i = skipSpace(body, i)
		if i >= len(body) || body[i] != '"' {
			return
		}
		keyStart := i
		i = skipString(body, i)
		if i > len(body) || body[i-1] != '"' || i-1 == keyStart {
			return
		}
		key := body[keyStart+1 : i-1]
		i = skipSpace(body, i)
		if i >= len(body) || body[i] != ':' {
			return
		}
		i = skipSpace(body, i+1)
		if i >= len(body) {
			return
		}
		valStart := i
		i = skipValue(body, i)
		if !fn(key, body[valStart:i]) {
			return
		}
		i = skipSpace(body, i)
		if i >= len(body) || body[i] != ',' {
			return
		}
		i++
	}
}

// The skip functions assume valid JSON (checked first with validJSON); on other input
// they stay within bounds but may return any index up to len(b).

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b) // unterminated (a backslash at the very end must not step past it)
}

func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	default: // number, true, false, null
		for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\n' && b[i] != '\r' && b[i] != '\t' {
			i++
		}
		return i
	}
}
