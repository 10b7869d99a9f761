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
	// start is the usage reported by Anthropic's message_start; final is the usage of
	// the whole answer (message_delta, a non-streaming message, or another dialect's
	// final usage).
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

// buildReply plans the Anthropic answer to p under b. n numbers the message (for the
// tool_use id).
func buildReply(p *parsed, b *Behavior, n string) reply {
	var rp reply
	var tool *toolSpec
	if b.ToolUse {
		tool = anthropicTool(p.body.Tools)
	}
	planContent(&rp, p.lastUserText(), b, tool, "toolu_fake_"+n)
	deltas := 0
	for i := range rp.blocks {
		deltas += len(rp.blocks[i].deltas)
		if rp.blocks[i].kind == thinkingBlock {
			deltas++ // signature_delta
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

// planContent plans the blocks of an answer, the same in every dialect: a thinking block
// when b asks for one, the text, and a call of tool (nil: none) with the id toolID.
func planContent(rp *reply, lastUser string, b *Behavior, tool *toolSpec, toolID string) {
	rp.stopReason = "end_turn"
	if b.Thinking {
		blk := replyBlock{kind: thinkingBlock, full: thinkingText, signature: thinkingSignature}
		blk.deltas = splitWords(blk.full)
		rp.blocks = append(rp.blocks, blk)
	}

	text := b.Text
	if text == "" {
		text = defaultText(lastUser)
	}
	if b.OutputTokens > 0 {
		text = fitWords(text, b.OutputTokens)
	}
	rp.blocks = append(rp.blocks, replyBlock{kind: textBlock, full: text, deltas: splitWords(text)})

	if tool != nil {
		input := tool.input()
		blk := replyBlock{kind: toolUseBlock, full: input, toolID: toolID, toolName: tool.name}
		blk.deltas = splitFragments(input, toolFragmentBytes)
		rp.blocks = append(rp.blocks, blk)
		rp.stopReason = "tool_use"
	}
}

// block returns the block of kind k, or nil.
func (rp *reply) block(k blockKind) *replyBlock {
	for i := range rp.blocks {
		if rp.blocks[i].kind == k {
			return &rp.blocks[i]
		}
	}
	return nil
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

// toolSpec is what a tool call needs of a tool definition, in any dialect.
type toolSpec struct {
	name   string
	schema toolSchema
}

// toolSchema is the part of a JSON Schema (or Gemini Schema) the made-up input follows.
type toolSchema struct {
	Properties map[string]struct {
		Type json.RawMessage `json:"type"`
	} `json:"properties"`
	Required []string `json:"required"`
}

// anthropicTool returns the first tool of an Anthropic request, or nil.
func anthropicTool(raw json.RawMessage) *toolSpec {
	var t struct {
		Name        string     `json:"name"`
		InputSchema toolSchema `json:"input_schema"`
	}
	if !firstTool(raw, func(one json.RawMessage) bool {
		return json.Unmarshal(one, &t) == nil && t.Name != ""
	}) {
		return nil
	}
	return &toolSpec{name: t.Name, schema: t.InputSchema}
}

// firstTool calls ok with each element of the tools array raw until it returns true,
// and reports whether one did. A malformed array has no tools.
func firstTool(raw json.RawMessage, ok func(json.RawMessage) bool) bool {
	if len(raw) == 0 {
		return false
	}
	var tools []json.RawMessage
	if err := json.Unmarshal(raw, &tools); err != nil {
		return false
	}
	for _, t := range tools {
		if ok(t) {
			return true
		}
	}
	return false
}

// input makes up the arguments of a call: a value for each required property, by type.
// A string property named command or cmd gets a harmless shell command, so real agent
// CLIs can run the round trip.
func (t *toolSpec) input() string {
	b := []byte{'{'}
	for i, prop := range t.schema.Required {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, prop)
		b = append(b, ':')
		switch schemaType(t.schema.Properties[prop].Type) {
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
	return string(b)
}

// schemaType reads a JSON Schema "type", a string or an array of them, in lower case
// (Gemini writes STRING, INTEGER, …).
func schemaType(raw json.RawMessage) string {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return strings.ToLower(one)
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		for _, t := range many {
			if t != "null" {
				return strings.ToLower(t)
			}
		}
	}
	return ""
}
