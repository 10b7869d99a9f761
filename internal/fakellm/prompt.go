package fakellm

import "encoding/json"

// prompt is what the OpenAI and Gemini parsers take from a request body: enough to
// count the input, find the markers and plan the answer.
type prompt struct {
	model  string
	stream bool
	// bytes is the length of all counted text.
	bytes int
	// userTexts are the texts of the last user turn, where markers are looked for, and
	// lastUser the last of them. Both are empty when the last user turn is a tool result.
	userTexts []string
	lastUser  string
	tools     json.RawMessage
}

// totalTokens is every counted input token, cached or not.
func (p *prompt) totalTokens() int64 {
	return max(int64((p.bytes+3)/4), 1)
}

func (p *prompt) userText(i int) (string, bool) {
	if i >= len(p.userTexts) {
		return "", false
	}
	return p.userTexts[i], true
}

// setUserTurn makes c the last user turn: its string, or its text blocks ("text" in
// Chat Completions, "input_text" in Responses).
func (p *prompt) setUserTurn(c *content) {
	p.userTexts, p.lastUser = p.userTexts[:0], ""
	if c.blocks == nil {
		if c.text != "" {
			p.userTexts = append(p.userTexts, c.text)
		}
		p.lastUser = c.text
		return
	}
	for i := range c.blocks {
		if t := c.blocks[i].Type; t == "text" || t == "input_text" {
			p.userTexts = append(p.userTexts, c.blocks[i].Text)
			p.lastUser = c.blocks[i].Text
		}
	}
}

// clearUserTurn records that the last user turn is a tool result: no text, no markers.
func (p *prompt) clearUserTurn() {
	p.userTexts, p.lastUser = p.userTexts[:0], ""
}

// contentBytes is the length of every text in c, nested blocks included.
func contentBytes(c *content) int {
	if c.blocks == nil {
		return len(c.text)
	}
	n := 0
	for i := range c.blocks {
		n += len(c.blocks[i].Text) + contentBytes(&c.blocks[i].Content)
	}
	return n
}

// plan plans the answer under b. findTool reads the dialect's tool definitions; the call
// gets the id toolID.
func (p *prompt) plan(b *Behavior, findTool func(json.RawMessage) *toolSpec, toolID string) reply {
	var tool *toolSpec
	if b.ToolUse {
		tool = findTool(p.tools)
	}
	var rp reply
	planContent(&rp, p.lastUser, b, tool, toolID)
	rp.final = generatedUsage(p.totalTokens(), &rp, b)
	return rp
}

// generatedUsage is the usage of an OpenAI or Gemini answer, mapped onto Usage: input
// without the cached part, which the fake only has when b sets CacheRead; output with
// the reasoning tokens, which are also in Reasoning.
func generatedUsage(total int64, rp *reply, b *Behavior) Usage {
	u := Usage{CacheRead: int64(max(b.CacheRead, 0))}
	u.InputTokens = max(total-u.CacheRead, 0)
	override(&u.InputTokens, b.InputTokens)

	switch {
	case b.ReasoningTokens > 0:
		u.Reasoning = int64(b.ReasoningTokens)
	case b.Thinking:
		u.Reasoning = int64(len(splitWords(thinkingText)))
	}
	out := u.Reasoning
	for i := range rp.blocks {
		if rp.blocks[i].kind != thinkingBlock {
			out += int64(len(rp.blocks[i].deltas))
		}
	}
	override(&out, b.OutputTokens)
	u.OutputTokens = max(out, u.Reasoning, 1)
	return u
}
