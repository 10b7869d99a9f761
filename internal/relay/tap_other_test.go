package relay

import (
	"bufio"
	"bytes"
	"errors"
	"testing"

	"github.com/tollgate/tollgate/internal/billing"
)

// feed runs a stream through a tap with a reader of the given buffer size.
func feed(t tap, stream []byte, bufSize int) tap {
	br := bufio.NewReaderSize(bytes.NewReader(stream), bufSize)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			t.Line(line, errors.Is(err, bufio.ErrBufferFull))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			t.Line(nil, false)
			return t
		}
	}
}

const chatStream = `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}],"usage":null}

data: {"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":2}}}

data: [DONE]

`

const responsesStream = `event: response.output_text.delta
data: {"type":"response.output_text.delta","delta":"hi","sequence_number":3}

event: response.completed
data: {"type":"response.completed","response":{"id":"r","usage":{"input_tokens":7,"input_tokens_details":{"cached_tokens":3},"output_tokens":2,"output_tokens_details":{"reasoning_tokens":1},"total_tokens":9}},"sequence_number":4}

`

const geminiSSE = `data: {"candidates":[{"content":{"parts":[{"text":"hi"}]}}],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":1}}

data: {"candidates":[{"content":{"parts":[{"text":" there"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":2,"cachedContentTokenCount":3,"thoughtsTokenCount":4}}

`

const geminiArray = "[{\n  \"candidates\": [{\"content\": {\"parts\": [{\"text\": \"hi\"}]}}],\n  \"usageMetadata\": {\"promptTokenCount\": 8, \"candidatesTokenCount\": 1}\n}\n,\r\n{\n  \"candidates\": [{\"finishReason\": \"STOP\"}],\n  \"usageMetadata\": {\"promptTokenCount\": 8, \"candidatesTokenCount\": 2, \"thoughtsTokenCount\": 4}\n}\n]"

func TestOpenAIAndGeminiTaps(t *testing.T) {
	for _, c := range []struct {
		name   string
		newTap func() tap
		stream string
		want   billing.Usage
	}{
		{"chat", func() tap { return &chatTap{} }, chatStream, billing.Usage{Input: 6, CacheRead: 4, Output: 5, Reasoning: 2}},
		{"responses", func() tap { return &responsesTap{} }, responsesStream, billing.Usage{Input: 4, CacheRead: 3, Output: 2, Reasoning: 1}},
		{"gemini sse", func() tap { return &geminiTap{} }, geminiSSE, billing.Usage{Input: 5, CacheRead: 3, Output: 6, Reasoning: 4}},
		{"gemini array", func() tap { return &geminiTap{} }, geminiArray, billing.Usage{Input: 8, Output: 6, Reasoning: 4}},
	} {
		for _, size := range []int{16, 4096} {
			tp := feed(c.newTap(), []byte(c.stream), size)
			if u, ok := tp.Usage(); !ok || u != c.want || !tp.Finished() {
				t.Errorf("%s (buffer %d): usage %+v ok %v finished %v, want %+v", c.name, size, u, ok, tp.Finished(), c.want)
			}
		}
	}
	// A Gemini array cut mid-element bills what the complete elements reported.
	cut := geminiArray[:len(geminiArray)-40]
	if u, ok := feed(&geminiTap{}, []byte(cut), 4096).Usage(); !ok || u.Output != 1 {
		t.Errorf("cut array: %+v %v", u, ok)
	}
}

// FuzzOtherTaps: the OpenAI and Gemini taps never panic, and read splitting never
// changes what they meter.
func FuzzOtherTaps(f *testing.F) {
	for _, s := range []string{chatStream, responsesStream, geminiSSE, geminiArray} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		for _, newTap := range []func() tap{
			func() tap { return &chatTap{} }, func() tap { return &responsesTap{} }, func() tap { return &geminiTap{} },
		} {
			a, b := feed(newTap(), stream, 4096), feed(newTap(), stream, 16)
			ua, oka := a.Usage()
			ub, okb := b.Usage()
			if ua != ub || oka != okb || a.Finished() != b.Finished() || a.ErrorType() != b.ErrorType() {
				t.Fatalf("%T: buffer size changed the result: %+v/%v vs %+v/%v", a, ua, oka, ub, okb)
			}
		}
	})
}
