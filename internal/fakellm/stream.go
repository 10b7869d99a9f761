package fakellm

import (
	"context"
	"net/http"
	"strconv"
	"time"
)

// framing is how a stream separates its events.
type framing uint8

const (
	namedEvents framing = iota // event: <name>\ndata: <json>\n\n (Anthropic, Responses)
	dataLines                  // data: <json>\n\n (Chat Completions, Gemini alt=sse)
	jsonArray                  // [<json>,\n<json>] (Gemini without alt=sse)
)

// eventWriter writes stream events one at a time and keeps the served entry up to date
// so that whatever stops the stream (a cut, the client leaving) leaves an entry that says
// what the client could have seen.
//
// With an event delay (or a scripted cut) every event is flushed on its own, as the real
// APIs do: their events are spaced by generation. Without one the events exist all at
// once, and they leave as the response buffer fills, a few per write: a fake that made a
// syscall per event would spend most of a zero-delay benchmark's CPU on writes no real
// upstream makes back to back (64 events: about 370 µs of the fake's CPU per stream,
// against about 60 µs buffered), and the streams/s a gateway reaches would measure the
// fake. The reference figures (18k–21k streams/s direct) were taken with such a
// fake. Flushing as events arrive is the proxy's job, and its own test (stream_flush in
// the bench, and e2e) spaces the events.
type eventWriter struct {
	w        http.ResponseWriter
	rc       *http.ResponseController
	ctx      context.Context
	e        *Served
	buf      []byte
	delay    time.Duration
	cutAfter int
	framing  framing
	failed   bool
}

// spaced reports whether every event is flushed on its own (see eventWriter).
func (ew *eventWriter) spaced() bool { return ew.delay > 0 || ew.cutAfter != 0 }

// open writes the headers of a 200 stream and readies ew to write its events. It
// reports false if the client is already gone.
func (ew *eventWriter) open(w http.ResponseWriter, r *http.Request, e *Served, b *Behavior, contentType string, f framing) bool {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	e.Status = http.StatusOK
	*ew = eventWriter{
		w:        w,
		rc:       http.NewResponseController(w),
		ctx:      r.Context(),
		e:        e,
		buf:      make([]byte, 0, 512),
		delay:    b.EventDelay,
		cutAfter: b.CutAfterEvents,
		framing:  f,
	}
	return ew.rc.Flush() == nil
}

// next waits the event delay, cuts the connection if the script says so, and returns
// the buffer with the event's framing written (event is the name of a named event), or
// nil if the stream must stop.
func (ew *eventWriter) next(event string) []byte {
	if ew.failed {
		return nil
	}
	if ew.cutAfter != 0 && ew.e.EventsWritten == max(ew.cutAfter, 0) {
		// The abort panic makes net/http drop the connection without ending the
		// chunked body, which is what a client sees when an upstream dies. The served
		// entry is recorded by the handler's defer while the panic unwinds.
		panic(http.ErrAbortHandler)
	}
	if ew.e.EventsWritten > 0 && !sleep(ew.ctx, ew.delay) {
		ew.failed = true
		return nil
	}
	if ew.ctx.Err() != nil {
		ew.failed = true
		return nil
	}
	b := ew.buf[:0]
	switch ew.framing {
	case namedEvents:
		b = append(b, "event: "...)
		b = append(b, event...)
		b = append(b, "\ndata: "...)
	case dataLines:
		b = append(b, "data: "...)
	case jsonArray:
		if ew.e.EventsWritten == 0 {
			b = append(b, '[')
		} else {
			b = append(b, ",\n"...)
		}
	}
	return b
}

// send writes the event in b. Every event but the last is flushed when events are spaced
// (eventWriter); the last one goes out when the handler returns, after the served entry
// is recorded, so a client that has seen the end of a response always finds it in the
// log. In a JSON array the caller closes the array in the last event.
func (ew *eventWriter) send(b []byte, last bool) bool {
	if ew.framing != jsonArray {
		b = append(b, '\n', '\n')
	}
	ew.buf = b
	if _, err := ew.w.Write(b); err != nil {
		ew.failed = true
		return false
	}
	if !last && ew.spaced() {
		if err := ew.rc.Flush(); err != nil {
			ew.failed = true
			return false
		}
	}
	ew.e.EventsWritten++
	return true
}

// writeStream sends rp as message_start, the content blocks (with a ping after the first
// block start), message_delta and message_stop.
func (s *Server) writeStream(w http.ResponseWriter, r *http.Request, e *Served, rp *reply, b *Behavior) {
	var ew eventWriter
	if !ew.open(w, r, e, b, "text/event-stream; charset=utf-8", namedEvents) {
		return
	}

	out := ew.next("message_start")
	if out == nil {
		return
	}
	out = append(out, `{"type":"message_start","message":{"id":`...)
	out = appendString(out, e.MessageID)
	out = append(out, `,"type":"message","role":"assistant","model":`...)
	out = appendString(out, e.Model)
	out = append(out, `,"content":[],"stop_reason":null,"stop_sequence":null,"usage":`...)
	out = appendFullUsage(out, rp.start)
	out = append(out, "}}"...)
	if !ew.send(out, false) {
		return
	}
	e.Usage = rp.start

	for i := range rp.blocks {
		blk := &rp.blocks[i]
		if out = ew.next("content_block_start"); out == nil {
			return
		}
		out = append(out, `{"type":"content_block_start","index":`...)
		out = strconv.AppendInt(out, int64(i), 10)
		switch blk.kind {
		case thinkingBlock:
			out = append(out, `,"content_block":{"type":"thinking","thinking":"","signature":""}}`...)
		case toolUseBlock:
			out = append(out, `,"content_block":{"type":"tool_use","id":`...)
			out = appendString(out, blk.toolID)
			out = append(out, `,"name":`...)
			out = appendString(out, blk.toolName)
			out = append(out, `,"input":{}}}`...)
		default:
			out = append(out, `,"content_block":{"type":"text","text":""}}`...)
		}
		if !ew.send(out, false) {
			return
		}
		if i == 0 {
			if out = ew.next("ping"); out == nil {
				return
			}
			if !ew.send(append(out, `{"type": "ping"}`...), false) {
				return
			}
		}

		for _, d := range blk.deltas {
			if out = ew.next("content_block_delta"); out == nil {
				return
			}
			out = appendDeltaHead(out, i)
			switch blk.kind {
			case thinkingBlock:
				out = append(out, `{"type":"thinking_delta","thinking":`...)
			case toolUseBlock:
				out = append(out, `{"type":"input_json_delta","partial_json":`...)
			default:
				out = append(out, `{"type":"text_delta","text":`...)
			}
			out = appendString(out, d)
			if !ew.send(append(out, "}}"...), false) {
				return
			}
			if b.MidStreamError {
				if out = ew.next("error"); out == nil {
					return
				}
				ew.send(appendStreamError(out, b), true)
				return
			}
		}
		if blk.kind == thinkingBlock {
			if out = ew.next("content_block_delta"); out == nil {
				return
			}
			out = appendDeltaHead(out, i)
			out = append(out, `{"type":"signature_delta","signature":`...)
			out = appendString(out, blk.signature)
			if !ew.send(append(out, "}}"...), false) {
				return
			}
		}

		if out = ew.next("content_block_stop"); out == nil {
			return
		}
		out = append(out, `{"type":"content_block_stop","index":`...)
		out = strconv.AppendInt(out, int64(i), 10)
		if !ew.send(append(out, '}'), false) {
			return
		}
	}

	if out = ew.next("message_delta"); out == nil {
		return
	}
	out = append(out, `{"type":"message_delta","delta":{"stop_reason":`...)
	out = appendString(out, rp.stopReason)
	out = append(out, `,"stop_sequence":null},"usage":`...)
	out = appendDeltaUsage(out, rp.final)
	if !ew.send(append(out, '}'), false) {
		return
	}
	e.Usage = rp.final

	if out = ew.next("message_stop"); out == nil {
		return
	}
	if ew.send(append(out, `{"type":"message_stop"}`...), true) {
		e.Complete = true
	}
}

func appendDeltaHead(b []byte, index int) []byte {
	b = append(b, `{"type":"content_block_delta","index":`...)
	b = strconv.AppendInt(b, int64(index), 10)
	return append(b, `,"delta":`...)
}

// appendStreamError appends the error event of a MidStreamError: overloaded_error
// unless b names another type or message.
func appendStreamError(b []byte, bh *Behavior) []byte {
	errType, message := bh.ErrorType, bh.ErrorMessage
	if errType == "" {
		errType = "overloaded_error"
	}
	if message == "" {
		message = errorMessage(529)
		if errType != "overloaded_error" {
			message = "Internal server error (fakellm)"
		}
	}
	b = append(b, `{"type":"error","error":{"type":`...)
	b = appendString(b, errType)
	b = append(b, `,"message":`...)
	b = appendString(b, message)
	return append(b, "}}"...)
}
