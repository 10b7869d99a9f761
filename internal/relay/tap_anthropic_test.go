package relay

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/billing"
)

const recordedStream = `event: message_start
data: {"type":"message_start","message":{"model":"claude-3-7-sonnet-20250219","id":"msg_01","type":"message","role":"assistant","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":397,"cache_creation_input_tokens":120,"cache_read_input_tokens":50,"cache_creation":{"ephemeral_5m_input_tokens":20,"ephemeral_1h_input_tokens":100},"output_tokens":2,"service_tier":"standard"}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"I'll"}}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":397,"cache_creation_input_tokens":120,"cache_read_input_tokens":50,"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

`

// tapAll feeds a stream through a tap with a reader of the given buffer size (small
// sizes split long lines into partial pieces, as in production).
func tapAll(stream []byte, bufSize int) *anthropicTap {
	t := &anthropicTap{}
	br := bufio.NewReaderSize(bytes.NewReader(stream), bufSize)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			t.Line(line, errors.Is(err, bufio.ErrBufferFull))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			t.Line(nil, false) // end of stream: complete a pending line
			return t
		}
	}
}

func TestAnthropicTap(t *testing.T) {
	tp := tapAll([]byte(recordedStream), 4096)
	want := billing.Usage{Input: 397, Output: 89, CacheWrite5m: 20, CacheWrite1h: 100, CacheRead: 50}
	if u, ok := tp.Usage(); !ok || u != want || !tp.Finished() || tp.ErrorType() != "" {
		t.Fatalf("usage %+v ok %v finished %v; want %+v", u, ok, tp.Finished(), want)
	}
	// Lines longer than the reader's buffer arrive in pieces and are reassembled.
	if u, _ := tapAll([]byte(recordedStream), 16).Usage(); u != want {
		t.Fatalf("with a 16-byte buffer: %+v", u)
	}
	// Cut before message_delta: what message_start reported.
	cut := recordedStream[:strings.Index(recordedStream, "event: message_delta")]
	if u, _ := tapAll([]byte(cut), 4096).Usage(); u.Output != 2 || u.Input != 397 {
		t.Fatalf("cut stream: %+v", u)
	}
	// No event lines (some compatible upstreams): types come from the payload.
	noEvents := strings.ReplaceAll(recordedStream, "event: ", "x-ignored: ")
	if u, _ := tapAll([]byte(noEvents), 4096).Usage(); u != want {
		t.Fatalf("without event lines: %+v", u)
	}
	errStream := "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
	if et := tapAll([]byte(errStream), 4096).ErrorType(); et != "overloaded_error" {
		t.Fatalf("error type %q", et)
	}
	// CRLF line endings.
	if u, _ := tapAll([]byte(strings.ReplaceAll(recordedStream, "\n", "\r\n")), 4096).Usage(); u != want {
		t.Fatalf("CRLF: %+v", u)
	}
}

// FuzzAnthropicTap: the tap never panics, and how lines are split into reads never
// changes what it meters.
func FuzzAnthropicTap(f *testing.F) {
	f.Add([]byte(recordedStream))
	f.Add([]byte("data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":-5}}\n\n"))
	f.Add([]byte("event: message_start\ndata: {\"message\":{\"usage\":{\"input_tokens\":1e99}}}\n"))
	f.Fuzz(func(t *testing.T, stream []byte) {
		a, b := tapAll(stream, 4096), tapAll(stream, 16)
		ua, oka := a.Usage()
		ub, okb := b.Usage()
		if ua != ub || oka != okb || a.Finished() != b.Finished() || a.ErrorType() != b.ErrorType() {
			t.Fatalf("buffer size changed the result: %+v/%v vs %+v/%v", ua, oka, ub, okb)
		}
	})
}
