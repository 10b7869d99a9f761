package fakellm

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// responsesRequest is a decoded Responses request.
type responsesRequest struct {
	prompt
	// instructions is echoed in the Response object when it is a string.
	instructions    string
	hasInstructions bool
	// summary says whether the request asked for reasoning summaries.
	summary bool
}

// responsesBody is the part of a Responses request the fake reads.
type responsesBody struct {
	Model        string          `json:"model"`
	Stream       bool            `json:"stream"`
	Instructions content         `json:"instructions"`
	Input        responsesInput  `json:"input"`
	Tools        json.RawMessage `json:"tools"`
	Reasoning    struct {
		Summary string `json:"summary"`
	} `json:"reasoning"`
}

// responsesInput is the input of a Responses request: a string or a list of items.
type responsesInput struct {
	text  string
	items []responsesItem
}

func (in *responsesInput) UnmarshalJSON(b []byte) error {
	switch s := strings.TrimLeft(string(b[:min(len(b), 64)]), " \t\r\n"); {
	case strings.HasPrefix(s, `"`):
		return json.Unmarshal(b, &in.text)
	case strings.HasPrefix(s, "["):
		return json.Unmarshal(b, &in.items)
	case strings.HasPrefix(s, "null"):
		return nil
	}
	return errors.New("input must be a string or an array of items")
}

// responsesItem is an input item: a message (content), a function_call_output
// (output), or another item the fake does not count (function_call, reasoning, …).
type responsesItem struct {
	Type    string  `json:"type"`
	Role    string  `json:"role"`
	Content content `json:"content"`
	Output  content `json:"output"`
}

// parseResponses decodes a Responses request. Counted text is instructions plus every
// text of input: a string input, string content, input_text and output_text parts, and
// function_call_output outputs. The last user turn is the last user message, or none
// when a function_call_output comes after it.
func parseResponses(body []byte) (*responsesRequest, apiError, bool) {
	var wb responsesBody
	if err := json.Unmarshal(body, &wb); err != nil {
		return nil, openAIParseError(body, err), false
	}
	if wb.Model == "" {
		return nil, missingParam("model"), false
	}
	p := &responsesRequest{
		prompt:          prompt{model: wb.Model, stream: wb.Stream, tools: wb.Tools},
		instructions:    wb.Instructions.text,
		hasInstructions: wb.Instructions.blocks == nil && wb.Instructions.text != "",
		summary:         wb.Reasoning.Summary != "" && wb.Reasoning.Summary != "none",
	}
	p.bytes = contentBytes(&wb.Instructions) + len(wb.Input.text)
	if wb.Input.text != "" {
		p.setUserTurn(&content{text: wb.Input.text})
	}
	for i := range wb.Input.items {
		it := &wb.Input.items[i]
		p.bytes += contentBytes(&it.Content) + contentBytes(&it.Output)
		switch {
		case (it.Type == "" || it.Type == "message") && it.Role == "user":
			p.setUserTurn(&it.Content)
		case it.Type == "function_call_output" || it.Type == "custom_tool_call_output":
			p.clearUserTurn()
		}
	}
	return p, apiError{}, true
}

// handleResponses serves POST /v1/responses and /backend-api/codex/responses. A
// WebSocket upgrade (GET with Upgrade: websocket) gets 426 with an empty body, which
// makes Codex fall back to HTTP at once; any other error there would fail its turn.
func (s *Server) handleResponses(w http.ResponseWriter, r *http.Request) {
	x := s.begin(w, r, &openAIDialect, EndpointResponses)
	defer s.record(x.e)
	if r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusUpgradeRequired)
		x.e.Status = http.StatusUpgradeRequired
		x.e.Complete = true
		return
	}
	body, ok := x.readPost()
	if !ok {
		return
	}
	p, ae, ok := parseResponses(body)
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

	e.MessageID = "resp_fake_" + x.n
	rp := p.plan(&b, responsesTool, "call_fake_"+x.n)
	e.Generated = rp.final
	rw := responsesWriter{p: p, rp: &rp, id: e.MessageID, n: x.n, created: time.Now().Unix()}
	if p.stream {
		rw.write(x, &b)
		return
	}
	out := rw.appendResponse(make([]byte, 0, 1024), "completed", nil)
	e.Status = http.StatusOK
	e.Usage = rp.final
	e.Complete = writeJSON(w, out) == nil
}

// responsesWriter writes one Responses answer: the Response object, or its events.
type responsesWriter struct {
	p       *responsesRequest
	rp      *reply
	id, n   string
	created int64
	ew      eventWriter
}

// itemID is the id of the output item of blk: rs_, msg_ or fc_fake_N.
func (rw *responsesWriter) itemID(blk *replyBlock) string {
	switch blk.kind {
	case thinkingBlock:
		return "rs_fake_" + rw.n
	case toolUseBlock:
		return "fc_fake_" + rw.n
	}
	return "msg_fake_" + rw.n
}

// appendResponse appends the Response object with status. A completed one has the
// output and the usage; a failed one has fail as its error.
func (rw *responsesWriter) appendResponse(b []byte, status string, fail *apiError) []byte {
	b = append(b, `{"id":`...)
	b = appendString(b, rw.id)
	b = append(b, `,"object":"response","created_at":`...)
	b = strconv.AppendInt(b, rw.created, 10)
	b = append(b, `,"status":"`...)
	b = append(b, status...)
	b = append(b, `","background":false,"error":`...)
	if fail != nil {
		b = append(b, `{"code":`...)
		b = appendString(b, fail.code)
		b = append(b, `,"message":`...)
		b = appendString(b, fail.message)
		b = append(b, '}')
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"incomplete_details":null,"instructions":`...)
	if rw.p.hasInstructions {
		b = appendString(b, rw.p.instructions)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"max_output_tokens":null,"model":`...)
	b = appendString(b, rw.p.model)
	b = append(b, `,"output":[`...)
	completed := status == "completed"
	if completed {
		for i := range rw.rp.blocks {
			if i > 0 {
				b = append(b, ',')
			}
			b = rw.appendItem(b, &rw.rp.blocks[i], true)
		}
	}
	b = append(b, `],"parallel_tool_calls":true,"previous_response_id":null,"service_tier":"default",`+
		`"temperature":1.0,"tool_choice":"auto","top_p":1.0,"truncation":"disabled","usage":`...)
	if completed {
		b = appendResponsesUsage(b, rw.rp.final)
	} else {
		b = append(b, "null"...)
	}
	return append(b, `,"metadata":{}}`...)
}

// appendItem appends the output item of blk, as output_item.added (done false: empty,
// in progress) or output_item.done and the completed response show it.
func (rw *responsesWriter) appendItem(b []byte, blk *replyBlock, done bool) []byte {
	status := "in_progress"
	if done {
		status = "completed"
	}
	b = append(b, `{"id":`...)
	b = appendString(b, rw.itemID(blk))
	switch blk.kind {
	case thinkingBlock:
		b = append(b, `,"type":"reasoning","summary":[`...)
		if done && rw.p.summary {
			b = append(b, `{"type":"summary_text","text":`...)
			b = appendString(b, blk.full)
			b = append(b, '}')
		}
		return append(b, "]}"...)
	case toolUseBlock:
		b = append(b, `,"type":"function_call","status":"`...)
		b = append(b, status...)
		b = append(b, `","arguments":`...)
		if done {
			b = appendString(b, blk.full)
		} else {
			b = append(b, `""`...)
		}
		b = append(b, `,"call_id":`...)
		b = appendString(b, blk.toolID)
		b = append(b, `,"name":`...)
		b = appendString(b, blk.toolName)
		return append(b, '}')
	}
	b = append(b, `,"type":"message","status":"`...)
	b = append(b, status...)
	b = append(b, `","content":[`...)
	if done {
		b = appendTextPart(b, blk.full)
	}
	return append(b, `],"role":"assistant"}`...)
}

func appendTextPart(b []byte, text string) []byte {
	b = append(b, `{"type":"output_text","annotations":[],"logprobs":[],"text":`...)
	b = appendString(b, text)
	return append(b, '}')
}

// event returns the buffer with the next event started: its type and sequence_number
// (the number of events before it). The caller appends the rest of the object.
func (rw *responsesWriter) event(typ string) []byte {
	out := rw.ew.next(typ)
	if out == nil {
		return nil
	}
	out = append(out, `{"type":"`...)
	out = append(out, typ...)
	out = append(out, `","sequence_number":`...)
	return strconv.AppendInt(out, int64(rw.ew.e.EventsWritten), 10)
}

// itemHead appends the item_id and output_index fields of an item event.
func (rw *responsesWriter) itemHead(b []byte, blk *replyBlock, index int) []byte {
	b = append(b, `,"item_id":`...)
	b = appendString(b, rw.itemID(blk))
	b = append(b, `,"output_index":`...)
	return strconv.AppendInt(b, int64(index), 10)
}

// write streams the answer as Responses events: response.created, in_progress, each
// output item (added, its parts and deltas, done) and response.completed, or
// response.failed right after the first delta for a MidStreamError.
func (rw *responsesWriter) write(x *exchange, b *Behavior) {
	e := x.e
	if !rw.ew.open(x.w, x.r, e, b, "text/event-stream; charset=utf-8", namedEvents) {
		return
	}
	for _, typ := range []string{"response.created", "response.in_progress"} {
		out := rw.event(typ)
		if out == nil {
			return
		}
		out = append(out, `,"response":`...)
		out = rw.appendResponse(out, "in_progress", nil)
		if !rw.ew.send(append(out, '}'), false) {
			return
		}
	}
	for i := range rw.rp.blocks {
		if !rw.writeItem(i, b) {
			return
		}
	}
	out := rw.event("response.completed")
	if out == nil {
		return
	}
	out = append(out, `,"response":`...)
	out = rw.appendResponse(out, "completed", nil)
	if rw.ew.send(append(out, '}'), true) {
		e.Usage = rw.rp.final
		e.Complete = true
	}
}

// writeItem streams output item i; it returns false when the stream has ended.
func (rw *responsesWriter) writeItem(i int, b *Behavior) bool {
	blk := &rw.rp.blocks[i]
	out := rw.event("response.output_item.added")
	if out == nil {
		return false
	}
	out = append(out, `,"output_index":`...)
	out = strconv.AppendInt(out, int64(i), 10)
	out = append(out, `,"item":`...)
	out = rw.appendItem(out, blk, false)
	if !rw.ew.send(append(out, '}'), false) {
		return false
	}

	// Each kind of item has its own part events around its deltas.
	var partAdded, deltaType, doneType, partDone, index string
	switch blk.kind {
	case thinkingBlock:
		if rw.p.summary {
			partAdded, deltaType = "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta"
			doneType, partDone = "response.reasoning_summary_text.done", "response.reasoning_summary_part.done"
			index = `,"summary_index":0`
		}
	case toolUseBlock:
		deltaType, doneType = "response.function_call_arguments.delta", "response.function_call_arguments.done"
	default:
		partAdded, deltaType = "response.content_part.added", "response.output_text.delta"
		doneType, partDone = "response.output_text.done", "response.content_part.done"
		index = `,"content_index":0`
	}
	part := func(out []byte, text string) []byte {
		if blk.kind == thinkingBlock {
			out = append(out, `,"part":{"type":"summary_text","text":`...)
			out = appendString(out, text)
			return append(out, "}}"...)
		}
		out = append(out, `,"part":`...)
		return append(appendTextPart(out, text), '}')
	}

	if partAdded != "" {
		if out = rw.event(partAdded); out == nil {
			return false
		}
		out = append(rw.itemHead(out, blk, i), index...)
		if !rw.ew.send(part(out, ""), false) {
			return false
		}
	}
	if deltaType != "" {
		for _, d := range blk.deltas {
			if d == "" {
				continue // the empty first fragment of a tool call is the item's arguments
			}
			if out = rw.event(deltaType); out == nil {
				return false
			}
			out = append(rw.itemHead(out, blk, i), index...)
			out = append(out, `,"delta":`...)
			out = appendString(out, d)
			if blk.kind == textBlock {
				out = append(out, `,"logprobs":[]`...)
			}
			if !rw.ew.send(append(out, '}'), false) {
				return false
			}
			if b.MidStreamError {
				rw.fail(b)
				return false
			}
		}
		if out = rw.event(doneType); out == nil {
			return false
		}
		out = append(rw.itemHead(out, blk, i), index...)
		switch blk.kind {
		case toolUseBlock:
			out = append(out, `,"name":`...)
			out = appendString(out, blk.toolName)
			out = append(out, `,"arguments":`...)
		default:
			out = append(out, `,"text":`...)
		}
		out = appendString(out, blk.full)
		if blk.kind == textBlock {
			out = append(out, `,"logprobs":[]`...)
		}
		if !rw.ew.send(append(out, '}'), false) {
			return false
		}
	}
	if partDone != "" {
		if out = rw.event(partDone); out == nil {
			return false
		}
		out = append(rw.itemHead(out, blk, i), index...)
		if !rw.ew.send(part(out, blk.full), false) {
			return false
		}
	}

	if out = rw.event("response.output_item.done"); out == nil {
		return false
	}
	out = append(out, `,"output_index":`...)
	out = strconv.AppendInt(out, int64(i), 10)
	out = append(out, `,"item":`...)
	out = rw.appendItem(out, blk, true)
	return rw.ew.send(append(out, '}'), false)
}

// fail ends the stream with response.failed.
func (rw *responsesWriter) fail(b *Behavior) {
	out := rw.event("response.failed")
	if out == nil {
		return
	}
	ae := midStreamFailure(b)
	out = append(out, `,"response":`...)
	out = rw.appendResponse(out, "failed", &ae)
	rw.ew.send(append(out, '}'), true)
}
