package fakellm

import (
	"errors"
	"io"
	"net/http"
	"strconv"
)

// maxBody is the largest request body read. The real API's limit is 32 MB too.
const maxBody = 32 << 20

// handleMessages serves POST /v1/messages and, with countOnly, count_tokens. Every call
// is recorded in the served log once the handler is done, including when the stream
// was cut (the record runs while the abort panic unwinds).
func (s *Server) handleMessages(w http.ResponseWriter, r *http.Request, countOnly bool) {
	endpoint := EndpointMessages
	if countOnly {
		endpoint = EndpointCountTokens
	}
	x := s.begin(w, r, &anthropicDialect, endpoint)
	defer s.record(x.e)
	body, ok := x.readPost()
	if !ok {
		return
	}
	p, err := parseRequest(body)
	if err != nil {
		if errors.Is(err, errNoModel) || errors.Is(err, errNoMessages) {
			x.fail(apiError{status: http.StatusBadRequest, message: err.Error()})
			return
		}
		x.fail(apiError{status: http.StatusBadRequest, message: "There was an error parsing the body of your request: " + err.Error()})
		return
	}
	e := x.e
	e.Model = p.body.Model
	stream := p.body.Stream && !countOnly
	e.Stream = stream

	b, ok := x.behave(x.request(body, p.body.Model, stream, p.lastUserText()), p)
	if !ok {
		return
	}
	w.Header().Set("Request-Id", e.RequestID)
	if countOnly {
		n := p.totalTokens()
		override(&n, b.InputTokens)
		out := strconv.AppendInt(append(make([]byte, 0, 32), `{"input_tokens":`...), n, 10)
		out = append(out, '}')
		e.Usage.InputTokens = n
		e.Generated = e.Usage
		e.Status = http.StatusOK
		e.Complete = writeJSON(w, out) == nil
		return
	}

	e.MessageID = "msg_fake_" + x.n
	rp := buildReply(p, &b, x.n)
	e.Generated = rp.final
	if stream {
		s.writeStream(w, r, e, &rp, &b)
		return
	}
	out := appendMessage(make([]byte, 0, 512), e.MessageID, p.body.Model, &rp)
	e.Status = http.StatusOK
	e.Usage = rp.final
	e.Complete = writeJSON(w, out) == nil
}

func readBody(r *http.Request) ([]byte, error) {
	body := http.MaxBytesReader(nil, r.Body, maxBody)
	if r.ContentLength > 0 && r.ContentLength <= maxBody {
		buf := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(body, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	return io.ReadAll(body)
}

func writeJSON(w http.ResponseWriter, body []byte) error {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(body)
	return err
}

// appendMessage appends the non-streaming message: the same object as message_start,
// with the content filled in and the final usage.
func appendMessage(b []byte, id, model string, rp *reply) []byte {
	b = append(b, `{"id":`...)
	b = appendString(b, id)
	b = append(b, `,"type":"message","role":"assistant","model":`...)
	b = appendString(b, model)
	b = append(b, `,"content":[`...)
	for i := range rp.blocks {
		if i > 0 {
			b = append(b, ',')
		}
		blk := &rp.blocks[i]
		switch blk.kind {
		case thinkingBlock:
			b = append(b, `{"type":"thinking","thinking":`...)
			b = appendString(b, blk.full)
			b = append(b, `,"signature":`...)
			b = appendString(b, blk.signature)
			b = append(b, '}')
		case toolUseBlock:
			b = append(b, `{"type":"tool_use","id":`...)
			b = appendString(b, blk.toolID)
			b = append(b, `,"name":`...)
			b = appendString(b, blk.toolName)
			b = append(b, `,"input":`...)
			b = append(b, blk.full...)
			b = append(b, '}')
		default:
			b = append(b, `{"type":"text","text":`...)
			b = appendString(b, blk.full)
			b = append(b, '}')
		}
	}
	b = append(b, `],"stop_reason":`...)
	b = appendString(b, rp.stopReason)
	b = append(b, `,"stop_sequence":null,"usage":`...)
	b = appendFullUsage(b, rp.final)
	return append(b, '}')
}
