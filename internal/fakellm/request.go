package fakellm

import (
	"encoding/json"
	"errors"
	"net/http"
)

// Request is what a script sees of one call to a model endpoint or the token endpoint.
type Request struct {
	// Provider and Endpoint are those of the served entry (ProviderOpenAI,
	// EndpointChat, …).
	Provider string
	Endpoint string
	Method   string
	Path     string
	RawQuery string
	// Header is a clone of the request headers. The served log shares it: don't modify it.
	Header http.Header
	Body   []byte
	Model  string
	Stream bool
	// LastUserText is the last text of the last user turn (see the package doc).
	LastUserText string
}

// wireBody is the part of a Messages request the fake reads. Everything else is skipped
// by the decoder, and tools are kept raw because only a tool_use answer needs them.
type wireBody struct {
	Model    string          `json:"model"`
	Stream   bool            `json:"stream"`
	System   content         `json:"system"`
	Messages []wireMessage   `json:"messages"`
	Tools    json.RawMessage `json:"tools"`
}

type wireMessage struct {
	Role    string  `json:"role"`
	Content content `json:"content"`
}

// content is a string or an array of blocks, as in system, message content and
// tool_result content.
type content struct {
	text   string
	blocks []block
}

func (c *content) UnmarshalJSON(b []byte) error {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	if i == len(b) {
		return errors.New("content is empty")
	}
	switch b[i] {
	case '"':
		return json.Unmarshal(b, &c.text)
	case '[':
		return json.Unmarshal(b, &c.blocks)
	case 'n':
		return nil // null
	}
	return errors.New("content must be a string or an array of blocks")
}

type block struct {
	Type         string        `json:"type"`
	Text         string        `json:"text"`
	Content      content       `json:"content"`
	CacheControl *cacheControl `json:"cache_control"`
}

type cacheControl struct {
	Type string `json:"type"`
	TTL  string `json:"ttl"`
}

// parsed is a decoded request with its token tallies.
type parsed struct {
	body wireBody
	// bytes is the length of all counted text; cacheBytes the length of the cached
	// prefix (up to and including the last block with cache_control).
	bytes      int
	cacheBytes int
	cached     bool
	cacheTTL1h bool
	lastUser   *wireMessage
}

var (
	errNoModel    = errors.New("model: Field required")
	errNoMessages = errors.New("messages: Field required")
)

// parseRequest decodes a Messages request body. A non-nil error from the decoder means
// invalid JSON or a wrongly typed field; errNoModel and errNoMessages a missing field.
func parseRequest(body []byte) (*parsed, error) {
	p := &parsed{}
	if err := json.Unmarshal(body, &p.body); err != nil {
		return nil, err
	}
	if p.body.Model == "" {
		return nil, errNoModel
	}
	if len(p.body.Messages) == 0 {
		return nil, errNoMessages
	}
	p.tally(&p.body.System)
	for i := range p.body.Messages {
		m := &p.body.Messages[i]
		p.tally(&m.Content)
		if m.Role == "user" {
			p.lastUser = m
		}
	}
	return p, nil
}

func (p *parsed) tally(c *content) {
	if c.blocks == nil {
		p.bytes += len(c.text)
		return
	}
	for i := range c.blocks {
		b := &c.blocks[i]
		p.bytes += len(b.Text)
		p.tally(&b.Content)
		if b.CacheControl != nil {
			p.cached = true
			p.cacheBytes = p.bytes
			p.cacheTTL1h = b.CacheControl.TTL == "1h"
		}
	}
}

// totalTokens is every counted input token, cached or not.
func (p *parsed) totalTokens() int64 {
	return max(int64((p.bytes+3)/4), 1)
}

func (p *parsed) lastUserText() string {
	if p.lastUser == nil {
		return ""
	}
	c := &p.lastUser.Content
	if c.blocks == nil {
		return c.text
	}
	for i := len(c.blocks) - 1; i >= 0; i-- {
		if c.blocks[i].Type == "text" {
			return c.blocks[i].Text
		}
	}
	return ""
}

// userText returns the i-th text of the last user message, the places where markers
// are looked for. tool_result content is left out so a tool's output can't trigger a
// marker.
func (p *parsed) userText(i int) (string, bool) {
	if p.lastUser == nil {
		return "", false
	}
	c := &p.lastUser.Content
	if c.blocks == nil {
		return c.text, i == 0
	}
	for j := range c.blocks {
		if c.blocks[j].Type == "text" {
			if i == 0 {
				return c.blocks[j].Text, true
			}
			i--
		}
	}
	return "", false
}
