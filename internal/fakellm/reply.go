package fakellm

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

type blockKind uint8

const (
	textBlock blockKind = iota
	thinkingBlock
	toolUseBlock
)

// replyBlock is one content block of an answer. deltas are substrings of full, in order:
// words of text or thinking, fragments of the tool input JSON.
type replyBlock struct {
	kind      blockKind
	full      string
	deltas    []string
	signature string // thinking only
	toolID    string
	toolName  string
}

// reply is a whole answer, streamed or not.
type reply struct {
	blocks     []replyBlock
	stopReason string
	// start is the usage reported by message_start, final the cumulative one of
	// message_delta and of a non-streaming message.
	start Usage
	final Usage
}

const (
	thinkingText      = "Let me think about this request. A short and friendly answer will do."
	thinkingSignature = "ZmFrZWxsbS10aGlua2luZy1zaWduYXR1cmU="
	echoRunes         = 60
	padWord           = "blah"
	toolFragmentBytes = 8
)

// buildReply plans the answer to p under b. n numbers the message (for the tool_use id).
func buildReply(p *parsed, b *Behavior, n string) reply {
	var rp reply
	rp.stopReason = "end_turn"
	deltas := 0

	if b.Thinking {
		blk := replyBlock{kind: thinkingBlock, full: thinkingText, signature: thinkingSignature}
		blk.deltas = splitWords(blk.full)
		deltas += len(blk.deltas) + 1 // + signature_delta
		rp.blocks = append(rp.blocks, blk)
	}

	text := b.Text
	if text == "" {
		text = defaultText(p.lastUserText())
	}
	if b.OutputTokens > 0 {
		text = fitWords(text, b.OutputTokens)
	}
	txt := replyBlock{kind: textBlock, full: text, deltas: splitWords(text)}
	deltas += len(txt.deltas)
	rp.blocks = append(rp.blocks, txt)

	if b.ToolUse {
		if name, input, ok := toolCall(p.body.Tools); ok {
			blk := replyBlock{kind: toolUseBlock, full: input, toolID: "toolu_fake_" + n, toolName: name}
			blk.deltas = splitFragments(input, toolFragmentBytes)
			deltas += len(blk.deltas)
			rp.blocks = append(rp.blocks, blk)
			rp.stopReason = "tool_use"
		}
	}

	total := p.totalTokens()
	var cache int64
	if p.cached {
		cache = int64(p.cacheBytes / 4)
	}
	u := Usage{InputTokens: total - cache}
	if p.cacheTTL1h {
		u.CacheCreation1h = cache
	} else {
		u.CacheCreation5m = cache
	}
	override(&u.InputTokens, b.InputTokens)
	override(&u.CacheCreation5m, b.CacheCreation5m)
	override(&u.CacheCreation1h, b.CacheCreation1h)
	override(&u.CacheRead, b.CacheRead)

	rp.start = u
	rp.start.OutputTokens = 1
	rp.final = u
	rp.final.OutputTokens = max(int64(deltas), 1)
	override(&rp.final.OutputTokens, b.OutputTokens)
	return rp
}

func override(dst *int64, v int) {
	if v > 0 {
		*dst = int64(v)
	}
}

func defaultText(lastUser string) string {
	if lastUser == "" {
		return "Hello from fakellm."
	}
	return "Hello from fakellm. You said: " + firstRunes(lastUser, echoRunes)
}

func firstRunes(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\n' || c == '\t' || c == '\r'
}

// splitWords cuts s into words, each a run of non-space bytes with the spaces after it.
// Leading spaces belong to the first word. The pieces are substrings of s.
func splitWords(s string) []string {
	n := 0
	inSpace, seenWord := false, false
	for i := 0; i < len(s); i++ {
		if isSpace(s[i]) {
			inSpace = true
			continue
		}
		if !seenWord || inSpace {
			n++
		}
		inSpace, seenWord = false, true
	}
	if n == 0 && len(s) > 0 {
		n = 1
	}
	out := make([]string, 0, n)
	start := 0
	inSpace, seenWord = false, false
	for i := 0; i < len(s); i++ {
		if isSpace(s[i]) {
			inSpace = true
			continue
		}
		if inSpace && seenWord {
			out = append(out, s[start:i])
			start = i
		}
		inSpace, seenWord = false, true
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// fitWords pads text with padWord or truncates it so that it splits into exactly n words.
func fitWords(text string, n int) string {
	words := splitWords(text)
	if len(words) >= n {
		end := 0
		for _, w := range words[:n] {
			end += len(w)
		}
		return text[:end]
	}
	var sb strings.Builder
	sb.Grow(len(text) + (n-len(words))*(len(padWord)+1) + 1)
	sb.WriteString(text)
	if len(words) > 0 && !isSpace(text[len(text)-1]) {
		sb.WriteByte(' ')
	}
	for i := len(words); i < n; i++ {
		if i > len(words) {
			sb.WriteByte(' ')
		}
		sb.WriteString(padWord)
	}
	return sb.String()
}

// splitFragments cuts s into pieces of at most size bytes on rune boundaries, after an
// empty first piece, as the real API sends partial_json.
func splitFragments(s string, size int) []string {
	out := make([]string, 0, 2+len(s)/size)
	out = append(out, "")
	for len(s) > 0 {
		end := min(size, len(s))
		for end < len(s) && !utf8.RuneStart(s[end]) {
			end++
		}
		out = append(out, s[:end])
		s = s[end:]
	}
	return out
}

// wireTool is the part of a tool definition a tool call needs.
type wireTool struct {
	Name        string `json:"name"`
	InputSchema struct {
		Properties map[string]struct {
			Type json.RawMessage `json:"type"`
		} `json:"properties"`
		Required []string `json:"required"`
	} `json:"input_schema"`
}

// toolCall picks the first tool of the request and makes up an input for it: a value
// for each required property, by type. A string property named command or cmd gets a
// harmless shell command, so real agent CLIs can run the round trip.
func toolCall(raw json.RawMessage) (name, input string, ok bool) {
	if len(raw) == 0 {
		return "", "", false
	}
	var tools []json.RawMessage
	if err := json.Unmarshal(raw, &tools); err != nil || len(tools) == 0 {
		return "", "", false
	}
	var t wireTool
	if err := json.Unmarshal(tools[0], &t); err != nil || t.Name == "" {
		return "", "", false
	}
	b := []byte{'{'}
	for i, prop := range t.InputSchema.Required {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, prop)
		b = append(b, ':')
		switch schemaType(t.InputSchema.Properties[prop].Type) {
		case "integer", "number":
			b = append(b, '1')
		case "boolean":
			b = append(b, "true"...)
		case "array":
			b = append(b, "[]"...)
		case "object":
			b = append(b, "{}"...)
		case "null":
			b = append(b, "null"...)
		default:
			if prop == "command" || prop == "cmd" {
				b = appendString(b, "echo fake-tool-ran")
			} else {
				b = appendString(b, "fake-tool-ran")
			}
		}
	}
	b = append(b, '}')
	return t.Name, string(b), true
}

// schemaType reads a JSON Schema "type", a string or an array of them.
func schemaType(raw json.RawMessage) string {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return one
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		for _, t := range many {
			if t != "null" {
				return t
			}
		}
	}
	return ""
}
