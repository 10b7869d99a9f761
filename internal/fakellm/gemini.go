package fakellm

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

var geminiDialect = dialect{
	provider:   ProviderGemini,
	credential: geminiCredential,
	authError:  geminiAuthError,
	writeError: writeGeminiError,
}

// geminiAuthError answers as the Generative Language API does: no key is a 403, a bad
// key a 400 with reason API_KEY_INVALID, a bad OAuth token a 401.
func geminiAuthError(res authResult) apiError {
	switch res {
	case authMissing:
		return apiError{status: http.StatusForbidden, message: "Method doesn't allow unregistered callers " +
			"(callers without established identity). Please use API Key or other form of API consumer identity to call this API."}
	case authBadToken, authExpiredToken:
		return apiError{status: http.StatusUnauthorized, message: "Request had invalid authentication credentials. " +
			"Expected OAuth 2 access token, login cookie or other valid authentication credential."}
	}
	return apiError{status: http.StatusBadRequest, message: "API key not valid. Please pass a valid API key.", reason: "API_KEY_INVALID"}
}

// geminiStatus is the google.rpc status name of an HTTP status.
func geminiStatus(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return "INVALID_ARGUMENT"
	case http.StatusUnauthorized:
		return "UNAUTHENTICATED"
	case http.StatusForbidden:
		return "PERMISSION_DENIED"
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return "NOT_FOUND"
	case http.StatusConflict:
		return "ABORTED"
	case http.StatusTooManyRequests:
		return "RESOURCE_EXHAUSTED"
	case 499:
		return "CANCELLED"
	case http.StatusNotImplemented:
		return "UNIMPLEMENTED"
	case http.StatusServiceUnavailable, 529:
		return "UNAVAILABLE"
	case http.StatusGatewayTimeout:
		return "DEADLINE_EXCEEDED"
	}
	if status >= 500 {
		return "INTERNAL"
	}
	return "FAILED_PRECONDITION"
}

func geminiMessage(status int) string {
	switch status {
	case http.StatusTooManyRequests:
		return "You exceeded your current quota, please check your plan and billing details. For more information on " +
			"this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. (fakellm)"
	case http.StatusServiceUnavailable, 529:
		return "The model is overloaded. Please try again later."
	case http.StatusInternalServerError:
		return "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"
	}
	return statusMessage(status)
}

// writeGeminiError answers with {"error":{"code","message","status"}}. A 429 carries a
// QuotaFailure and a RetryInfo whose delay is the Retry-After header, 1s without one.
func writeGeminiError(w http.ResponseWriter, _ string, ae *apiError) error {
	body := appendGeminiError(make([]byte, 0, 256), ae, retryAfter(w.Header(), 1))
	return writeErrorBody(w, ae.status, body)
}

func appendGeminiError(b []byte, ae *apiError, retry int64) []byte {
	status, message := ae.typ, ae.message
	if status == "" {
		status = geminiStatus(ae.status)
	}
	if message == "" {
		message = geminiMessage(ae.status)
	}
	b = append(b, `{"error":{"code":`...)
	b = strconv.AppendInt(b, int64(ae.status), 10)
	b = append(b, `,"message":`...)
	b = appendString(b, message)
	b = append(b, `,"status":`...)
	b = appendString(b, status)
	switch {
	case ae.reason != "":
		b = append(b, `,"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":`...)
		b = appendString(b, ae.reason)
		b = append(b, `,"domain":"googleapis.com","metadata":{"service":"generativelanguage.googleapis.com"}}]`...)
	case ae.status == http.StatusTooManyRequests:
		b = append(b, `,"details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{`+
			`"quotaMetric":"generativelanguage.googleapis.com/generate_content_paid_tier_input_token_count",`+
			`"quotaId":"GenerateContentPaidTierInputTokensPerModelPerMinute"}]},`+
			`{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"`...)
		b = strconv.AppendInt(b, retry, 10)
		b = append(b, `s"}]`...)
	}
	return append(b, "}}"...)
}

// geminiRequest is a decoded generateContent or countTokens request.
type geminiRequest struct {
	prompt
	includeThoughts bool
}

// The REST API takes camelCase and snake_case field names alike; both are decoded.
type geminiBody struct {
	Contents               []geminiContent `json:"contents"`
	SystemInstruction      *geminiContent  `json:"systemInstruction"`
	SystemInstructionSnake *geminiContent  `json:"system_instruction"`
	Tools                  json.RawMessage `json:"tools"`
	GenerationConfig       *geminiConfig   `json:"generationConfig"`
	GenerationConfigSnake  *geminiConfig   `json:"generation_config"`
	// countTokens may wrap a whole generateContent request.
	GenerateContentRequest *geminiBody `json:"generateContentRequest"`
}

type geminiContent struct {
	Role  string `json:"role"`
	Parts []struct {
		Text    string `json:"text"`
		Thought bool   `json:"thought"`
	} `json:"parts"`
}

type geminiConfig struct {
	ThinkingConfig      *geminiThinking `json:"thinkingConfig"`
	ThinkingConfigSnake *geminiThinking `json:"thinking_config"`
}

type geminiThinking struct {
	IncludeThoughts      bool `json:"includeThoughts"`
	IncludeThoughtsSnake bool `json:"include_thoughts"`
}

func firstNonNil[T any](a, b *T) *T {
	if a != nil {
		return a
	}
	return b
}

// parseGemini decodes a Gemini request. Counted text is every parts[].text of contents
// and systemInstruction. The last user turn is the last content whose role is user,
// function (older clients' function responses) or empty; its text parts, thoughts left
// out, are where markers are looked for, so a turn of functionResponse parts has none.
func parseGemini(body []byte, model string, stream bool) (*geminiRequest, apiError, bool) {
	var wb geminiBody
	if err := json.Unmarshal(body, &wb); err != nil {
		return nil, apiError{status: http.StatusBadRequest, message: "Invalid JSON payload received. " + err.Error()}, false
	}
	if wb.GenerateContentRequest != nil && len(wb.Contents) == 0 {
		wb = *wb.GenerateContentRequest
	}
	if len(wb.Contents) == 0 {
		return nil, apiError{status: http.StatusBadRequest, message: "* GenerateContentRequest.contents: contents is not specified\n"}, false
	}
	p := &geminiRequest{prompt: prompt{model: model, stream: stream, tools: wb.Tools}}
	if cfg := firstNonNil(wb.GenerationConfig, wb.GenerationConfigSnake); cfg != nil {
		if th := firstNonNil(cfg.ThinkingConfig, cfg.ThinkingConfigSnake); th != nil {
			p.includeThoughts = th.IncludeThoughts || th.IncludeThoughtsSnake
		}
	}
	if sys := firstNonNil(wb.SystemInstruction, wb.SystemInstructionSnake); sys != nil {
		for _, part := range sys.Parts {
			p.bytes += len(part.Text)
		}
	}
	for i := range wb.Contents {
		c := &wb.Contents[i]
		user := c.Role == "" || c.Role == "user" || c.Role == "function"
		if user {
			p.clearUserTurn()
		}
		for _, part := range c.Parts {
			p.bytes += len(part.Text)
			if user && part.Text != "" && !part.Thought {
				p.userTexts = append(p.userTexts, part.Text)
				p.lastUser = part.Text
			}
		}
	}
	return p, apiError{}, true
}

// geminiTool returns the first function declaration of a Gemini request, or nil.
func geminiTool(raw json.RawMessage) *toolSpec {
	type decl struct {
		Name                 string      `json:"name"`
		Parameters           *toolSchema `json:"parameters"`
		ParametersJSONSchema *toolSchema `json:"parametersJsonSchema"`
	}
	var found *toolSpec
	firstTool(raw, func(one json.RawMessage) bool {
		var t struct {
			Decls      []decl `json:"functionDeclarations"`
			DeclsSnake []decl `json:"function_declarations"`
		}
		if json.Unmarshal(one, &t) != nil {
			return false
		}
		for _, d := range append(t.Decls, t.DeclsSnake...) {
			if d.Name == "" {
				continue
			}
			found = &toolSpec{name: d.Name}
			if schema := firstNonNil(d.Parameters, d.ParametersJSONSchema); schema != nil {
				found.schema = *schema
			}
			return true
		}
		return false
	})
	return found
}

// handleGemini serves /v1beta/models/{model}:{method}, and GET /v1beta/models/{model}.
func (s *Server) handleGemini(w http.ResponseWriter, r *http.Request, rest string) {
	model, method, ok := strings.Cut(rest, ":")
	switch {
	case !ok:
		s.handleGeminiModelGet(w, r, rest)
	case method == "generateContent", method == "streamGenerateContent":
		s.handleGeminiGenerate(w, r, model, method == "streamGenerateContent")
	case method == "countTokens":
		s.handleGeminiCount(w, r, model)
	default:
		_ = writeGeminiError(w, "", &apiError{status: http.StatusNotFound, message: "Method not found: " + method + " (fakellm)"})
	}
}

// handleGeminiCount serves :countTokens.
func (s *Server) handleGeminiCount(w http.ResponseWriter, r *http.Request, model string) {
	x := s.begin(w, r, &geminiDialect, EndpointGeminiCount)
	defer s.record(x.e)
	body, ok := x.readPost()
	if !ok {
		return
	}
	p, ae, ok := parseGemini(body, model, false)
	if !ok {
		x.fail(ae)
		return
	}
	x.e.Model = model
	b, ok := x.behave(x.request(body, model, false, p.lastUser), p)
	if !ok {
		return
	}
	n := p.totalTokens()
	override(&n, b.InputTokens)
	out := appendField(append(make([]byte, 0, 96), '{'), "totalTokens", n)
	out = append(out, `,"promptTokensDetails":[{"modality":"TEXT",`...)
	out = appendField(out, "tokenCount", n)
	out = append(out, "}]}"...)
	x.e.Usage.InputTokens = n
	x.e.Generated = x.e.Usage
	x.e.Status = http.StatusOK
	x.e.Complete = writeJSON(w, out) == nil
}

// handleGeminiGenerate serves :generateContent and :streamGenerateContent.
func (s *Server) handleGeminiGenerate(w http.ResponseWriter, r *http.Request, model string, stream bool) {
	x := s.begin(w, r, &geminiDialect, EndpointGeminiGenerate)
	defer s.record(x.e)
	body, ok := x.readPost()
	if !ok {
		return
	}
	p, ae, ok := parseGemini(body, model, stream)
	if !ok {
		x.fail(ae)
		return
	}
	e := x.e
	e.Model, e.Stream = model, stream
	b, ok := x.behave(x.request(body, model, stream, p.lastUser), p)
	if !ok {
		return
	}

	e.MessageID = "fake-" + x.n
	rp := p.plan(&b, geminiTool, "")
	e.Generated = rp.final
	gw := geminiWriter{p: p, rp: &rp, id: e.MessageID}
	if stream {
		gw.write(x, &b, r.URL.Query().Get("alt") == "sse")
		return
	}
	out := gw.appendChunk(make([]byte, 0, 768), nil, "", true, rp.final)
	e.Status = http.StatusOK
	e.Usage = rp.final
	e.Complete = writeJSON(w, out) == nil
}

// geminiWriter writes one GenerateContentResponse, or a stream of them.
type geminiWriter struct {
	p  *geminiRequest
	rp *reply
	id string
}

// parts lists the parts of the answer in order, as (block, delta) pairs: a thought part
// per thinking word when the request includes thoughts, a text part per word, and one
// functionCall part. delta -1 stands for the whole block.
func (gw *geminiWriter) parts() [][2]int {
	var out [][2]int
	for i := range gw.rp.blocks {
		blk := &gw.rp.blocks[i]
		switch {
		case blk.kind == thinkingBlock && !gw.p.includeThoughts:
		case blk.kind == toolUseBlock:
			out = append(out, [2]int{i, -1})
		default:
			for j := range blk.deltas {
				out = append(out, [2]int{i, j})
			}
		}
	}
	return out
}

func (gw *geminiWriter) appendPart(b []byte, blk *replyBlock, text string) []byte {
	if blk.kind == toolUseBlock {
		b = append(b, `{"functionCall":{"name":`...)
		b = appendString(b, blk.toolName)
		b = append(b, `,"args":`...)
		b = append(b, blk.full...)
		return append(b, "}}"...)
	}
	b = append(b, `{"text":`...)
	b = appendString(b, text)
	if blk.kind == thinkingBlock {
		b = append(b, `,"thought":true`...)
	}
	return append(b, '}')
}

// appendChunk appends a GenerateContentResponse with usage u and one part: text of blk,
// or every part in full when blk is nil (the non-streaming answer). The last chunk, or
// the full answer, carries finishReason STOP (function calls included, as Gemini does).
func (gw *geminiWriter) appendChunk(b []byte, blk *replyBlock, text string, last bool, u Usage) []byte {
	b = append(b, `{"candidates":[{"content":{"parts":[`...)
	if blk != nil {
		b = gw.appendPart(b, blk, text)
	} else {
		n := 0
		for i := range gw.rp.blocks {
			blk := &gw.rp.blocks[i]
			if blk.kind == thinkingBlock && !gw.p.includeThoughts {
				continue
			}
			if n > 0 {
				b = append(b, ',')
			}
			b = gw.appendPart(b, blk, blk.full)
			n++
		}
	}
	b = append(b, `],"role":"model"}`...)
	if last {
		b = append(b, `,"finishReason":"STOP"`...)
	}
	b = append(b, `,"index":0}],"usageMetadata":`...)
	b = appendGeminiUsage(b, u)
	b = append(b, `,"modelVersion":`...)
	b = appendString(b, gw.p.model)
	b = append(b, `,"responseId":`...)
	b = appendString(b, gw.id)
	return append(b, '}')
}

// appendGeminiUsage appends usageMetadata. Gemini's promptTokenCount includes the
// cached tokens and candidatesTokenCount excludes the thoughts; zero counts are left
// out, as proto3 JSON does.
func appendGeminiUsage(b []byte, u Usage) []byte {
	prompt := u.InputTokens + u.CacheRead
	b = append(b, '{')
	b = appendField(b, "promptTokenCount", prompt)
	if c := u.OutputTokens - u.Reasoning; c > 0 {
		b = append(b, ',')
		b = appendField(b, "candidatesTokenCount", c)
	}
	b = append(b, ',')
	b = appendField(b, "totalTokenCount", prompt+u.OutputTokens)
	if u.CacheRead > 0 {
		b = append(b, ',')
		b = appendField(b, "cachedContentTokenCount", u.CacheRead)
	}
	b = append(b, `,"promptTokensDetails":[{"modality":"TEXT",`...)
	b = appendField(b, "tokenCount", prompt)
	b = append(b, "}]"...)
	if u.Reasoning > 0 {
		b = append(b, ',')
		b = appendField(b, "thoughtsTokenCount", u.Reasoning)
	}
	return append(b, '}')
}

// write streams the answer, a GenerateContentResponse per part: as SSE data lines with
// alt=sse, else as a JSON array written element by element. Every chunk carries the
// usage so far (thoughts in full from the start, candidates cumulative); the last one
// carries the final usage.
func (gw *geminiWriter) write(x *exchange, b *Behavior, sse bool) {
	e := x.e
	contentType, f := "application/json; charset=UTF-8", jsonArray
	if sse {
		contentType, f = "text/event-stream", dataLines
	}
	var ew eventWriter
	if !ew.open(x.w, x.r, e, b, contentType, f) {
		return
	}
	final := gw.rp.final
	candidates := final.OutputTokens - final.Reasoning
	parts := gw.parts()
	var sent int64
	for p, ref := range parts {
		out := ew.next("")
		if out == nil {
			return
		}
		blk := &gw.rp.blocks[ref[0]]
		text := ""
		if ref[1] >= 0 {
			text = blk.deltas[ref[1]]
		}
		switch {
		case blk.kind == toolUseBlock:
			sent += int64(len(blk.deltas))
		case blk.kind == textBlock:
			sent++
		}
		u := final
		u.OutputTokens = min(sent, candidates) + final.Reasoning
		last := p == len(parts)-1
		if last {
			u = final
		}
		out = gw.appendChunk(out, blk, text, last, u)
		if last && !sse {
			out = append(out, ']')
		}
		if !ew.send(out, last) {
			return
		}
		e.Usage = u
		if last {
			e.Complete = true
			return
		}
		if b.MidStreamError {
			if out = ew.next(""); out == nil {
				return
			}
			ae := apiError{status: http.StatusServiceUnavailable, typ: b.ErrorType, message: b.ErrorMessage}
			out = appendGeminiError(out, &ae, 1)
			if !sse {
				out = append(out, ']')
			}
			ew.send(out, true)
			return
		}
	}
}
