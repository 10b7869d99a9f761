package fakellm

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// chatRequest is a decoded Chat Completions request.
type chatRequest struct {
	prompt
	// includeUsage is stream_options.include_usage of a streaming request.
	includeUsage bool
}

// chatBody is the part of a Chat Completions request the fake reads.
type chatBody struct {
	Model         string `json:"model"`
	Stream        bool   `json:"stream"`
	StreamOptions struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Messages []wireMessage   `json:"messages"`
	Tools    json.RawMessage `json:"tools"`
}

// parseChat decodes a Chat Completions request. Every message's text counts (string
// content or text parts, of any role). The last user turn is the last message whose
// role is user, tool or function; a tool or function message has no text and no
// markers.
func parseChat(body []byte) (*chatRequest, apiError, bool) {
	var wb chatBody
	if err := json.Unmarshal(body, &wb); err != nil {
		return nil, openAIParseError(body, err), false
	}
	if wb.Model == "" {
		return nil, apiError{status: http.StatusBadRequest, message: "you must provide a model parameter"}, false
	}
	if len(wb.Messages) == 0 {
		return nil, missingParam("messages"), false
	}
	p := &chatRequest{
		prompt:       prompt{model: wb.Model, stream: wb.Stream, tools: wb.Tools},
		includeUsage: wb.Stream && wb.StreamOptions.IncludeUsage,
	}
	var last *wireMessage
	for i := range wb.Messages {
		m := &wb.Messages[i]
		p.bytes += contentBytes(&m.Content)
		if m.Role == "user" || m.Role == "tool" || m.Role == "function" {
			last = m
		}
	}
	if last != nil && last.Role == "user" {
		p.setUserTurn(&last.Content)
	}
	return p, apiError{}, true
}

// handleChat serves POST /v1/chat/completions.
func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	x := s.begin(w, r, &openAIDialect, EndpointChat)
	defer s.record(x.e)
	body, ok := x.readPost()
	if !ok {
		return
	}
	p, ae, ok := parseChat(body)
	if !ok {
		x.fail(ae)
		return
	}
	e := x.e
	e.Model, e.Stream = p.model, p.stream
	x.inputTokens = p.totalTokens()
	b, ok := x.behave(x.request(body, p.model, p.stream, p.lastUser), p)
	if !ok {
		return
	}

	e.MessageID = "chatcmpl-fake-" + x.n
	rp := p.plan(&b, chatTool, "call_fake_"+x.n)
	e.Generated = rp.final
	cs := chatStream{id: e.MessageID, model: p.model, created: time.Now().Unix(), rp: &rp}
	if p.stream {
		cs.write(x, p.includeUsage, &b)
		return
	}
	out := cs.appendCompletion(make([]byte, 0, 768))
	e.Status = http.StatusOK
	e.Usage = rp.final
	e.Complete = writeJSON(w, out) == nil
}

// chatStream writes one Chat Completions answer, as chunks or as one completion.
type chatStream struct {
	id, model string
	created   int64
	rp        *reply
	ew        eventWriter
	// tail closes every chunk: "usage":null when the request asked for usage.
	tail string
}

func (cs *chatStream) appendHead(b []byte, object string) []byte {
	b = append(b, `{"id":`...)
	b = appendString(b, cs.id)
	b = append(b, `,"object":"`...)
	b = append(b, object...)
	b = append(b, `","created":`...)
	b = strconv.AppendInt(b, cs.created, 10)
	b = append(b, `,"model":`...)
	b = appendString(b, cs.model)
	return append(b, `,"service_tier":"default","system_fingerprint":"fp_fakellm","choices":[`...)
}

// appendCompletion appends the non-streaming chat.completion.
func (cs *chatStream) appendCompletion(b []byte) []byte {
	b = cs.appendHead(b, "chat.completion")
	b = append(b, `{"index":0,"message":{"role":"assistant","content":`...)
	text := cs.rp.block(textBlock)
	b = appendString(b, text.full)
	b = append(b, `,"refusal":null,"annotations":[]`...)
	finish := "stop"
	if tool := cs.rp.block(toolUseBlock); tool != nil {
		finish = "tool_calls"
		b = append(b, `,"tool_calls":[{"id":`...)
		b = appendString(b, tool.toolID)
		b = append(b, `,"type":"function","function":{"name":`...)
		b = appendString(b, tool.toolName)
		b = append(b, `,"arguments":`...)
		b = appendString(b, tool.full)
		b = append(b, "}}]"...)
	}
	b = append(b, `},"logprobs":null,"finish_reason":"`...)
	b = append(b, finish...)
	b = append(b, `"}],"usage":`...)
	b = appendChatUsage(b, cs.rp.final)
	return append(b, '}')
}

// chunk returns the buffer with the next chunk started up to its delta, or nil if the
// stream must stop.
func (cs *chatStream) chunk() []byte {
	out := cs.ew.next("")
	if out == nil {
		return nil
	}
	out = cs.appendHead(out, "chat.completion.chunk")
	return append(out, `{"index":0,"delta":`...)
}

// send ends the chunk in out (after its delta) with finish as finish_reason.
func (cs *chatStream) send(out []byte, finish string) bool {
	out = append(out, `,"logprobs":null,"finish_reason":`...)
	out = appendStringOrNull(out, finish)
	out = append(out, "}]"...)
	out = append(out, cs.tail...)
	return cs.ew.send(append(out, '}'), false)
}

// write streams the answer: a role chunk, a chunk per word, the tool call (its header,
// then argument fragments), a finish chunk, the usage chunk when includeUsage, and
// data: [DONE]. Thinking is not streamed: Chat Completions only reports its tokens.
func (cs *chatStream) write(x *exchange, includeUsage bool, b *Behavior) {
	e := x.e
	if !cs.ew.open(x.w, x.r, e, b, "text/event-stream; charset=utf-8", dataLines) {
		return
	}
	if includeUsage {
		cs.tail = `,"usage":null`
	}
	out := cs.chunk()
	if out == nil || !cs.send(append(out, `{"role":"assistant","content":"","refusal":null}`...), "") {
		return
	}
	finish := "stop"
	for i := range cs.rp.blocks {
		blk := &cs.rp.blocks[i]
		if blk.kind == thinkingBlock {
			continue
		}
		for j, d := range blk.deltas {
			if out = cs.chunk(); out == nil {
				return
			}
			switch {
			case blk.kind == textBlock:
				out = append(out, `{"content":`...)
				out = appendString(out, d)
				out = append(out, '}')
			case j == 0:
				out = append(out, `{"tool_calls":[{"index":0,"id":`...)
				out = appendString(out, blk.toolID)
				out = append(out, `,"type":"function","function":{"name":`...)
				out = appendString(out, blk.toolName)
				out = append(out, `,"arguments":`...)
				out = appendString(out, d)
				out = append(out, "}}]}"...)
			default:
				out = append(out, `{"tool_calls":[{"index":0,"function":{"arguments":`...)
				out = appendString(out, d)
				out = append(out, "}}]}"...)
			}
			if !cs.send(out, "") {
				return
			}
			if b.MidStreamError {
				if out = cs.ew.next(""); out == nil {
					return
				}
				ae := midStreamFailure(b)
				out = append(out, `{"error":{"message":`...)
				out = appendString(out, ae.message)
				out = append(out, `,"type":`...)
				out = appendString(out, ae.typ)
				out = append(out, `,"param":null,"code":`...)
				out = appendString(out, ae.code)
				cs.ew.send(append(out, "}}"...), true)
				return
			}
		}
		if blk.kind == toolUseBlock {
			finish = "tool_calls"
		}
	}
	if out = cs.chunk(); out == nil || !cs.send(append(out, "{}"...), finish) {
		return
	}
	if includeUsage {
		if out = cs.ew.next(""); out == nil {
			return
		}
		out = cs.appendHead(out, "chat.completion.chunk")
		out = append(out, `],"usage":`...)
		out = appendChatUsage(out, cs.rp.final)
		if !cs.ew.send(append(out, '}'), false) {
			return
		}
		e.Usage = cs.rp.final
	}
	if out = cs.ew.next(""); out == nil {
		return
	}
	if cs.ew.send(append(out, "[DONE]"...), true) {
		e.Complete = true
	}
}
