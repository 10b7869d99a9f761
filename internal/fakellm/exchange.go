package fakellm

import (
	"errors"
	"net/http"
	"strconv"
	"time"
)

// dialect is what differs between the providers in the steps every model endpoint
// takes: where the key is, and the shape of an error.
type dialect struct {
	provider string
	// credential finds the key; nil means the endpoint needs none.
	credential func(r *http.Request) credential
	// authError is the answer to a key that check rejected.
	authError  func(res authResult) apiError
	writeError func(w http.ResponseWriter, requestID string, ae *apiError) error
	// headers, when set, adds the headers every answer carries once the body is parsed
	// (OpenAI's x-request-id and x-ratelimit-*); status is the answer's, 0 for success.
	headers func(h http.Header, x *exchange, status int)
}

// apiError is an error answer before a dialect shapes it. Empty fields take the
// dialect's defaults for the status.
type apiError struct {
	status  int
	typ     string // Anthropic error type, OpenAI error type, Gemini status, OAuth error
	code    string // OpenAI error code
	param   string // OpenAI param
	message string
	reason  string // Gemini ErrorInfo reason
}

// exchange is one request to a model endpoint being served, and the served-log entry
// it fills in.
type exchange struct {
	s *Server
	d *dialect
	w http.ResponseWriter
	r *http.Request
	e *Served
	// n is the number of the request id, reused in the response ids.
	n string
	// inputTokens is the counted input of the request, for rate-limit headers.
	inputTokens int64
}

// begin starts serving r. The caller defers s.record(x.e).
func (s *Server) begin(w http.ResponseWriter, r *http.Request, d *dialect, endpoint string) *exchange {
	n := strconv.FormatInt(s.ids.Add(1), 10)
	return &exchange{s: s, d: d, w: w, r: r, n: n, e: &Served{
		Time:      time.Now(),
		Provider:  d.provider,
		Endpoint:  endpoint,
		Path:      r.URL.Path,
		Method:    r.Method,
		RequestID: "req_fake_" + n,
		Header:    r.Header.Clone(),
	}}
}

// fail answers with an error and notes it in the served entry.
func (x *exchange) fail(ae apiError) {
	x.e.Status = ae.status
	x.e.Complete = x.d.writeError(x.w, x.e.RequestID, &ae) == nil
}

// readPost checks the method and the key and reads the body. If one of them is wrong it
// answers with the error and returns false.
func (x *exchange) readPost() ([]byte, bool) {
	if x.r.Method != http.MethodPost {
		x.w.Header().Set("Allow", http.MethodPost)
		x.fail(apiError{status: http.StatusMethodNotAllowed})
		return nil, false
	}
	if x.d.credential != nil {
		if res := x.s.checkCredential(x.d.credential(x.r)); res != authOK {
			x.fail(x.d.authError(res))
			return nil, false
		}
	}
	body, err := readBody(x.r)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			x.fail(apiError{status: http.StatusRequestEntityTooLarge, message: "Request exceeds the maximum allowed number of bytes."})
			return nil, false
		}
		x.fail(apiError{status: http.StatusBadRequest, message: "could not read the request body: " + err.Error()})
		return nil, false
	}
	return body, true
}

// request is what the script sees of the exchange.
func (x *exchange) request(body []byte, model string, stream bool, lastUser string) *Request {
	return &Request{
		Provider:     x.e.Provider,
		Endpoint:     x.e.Endpoint,
		Method:       x.r.Method,
		Path:         x.r.URL.Path,
		RawQuery:     x.r.URL.RawQuery,
		Header:       x.e.Header,
		Body:         body,
		Model:        model,
		Stream:       stream,
		LastUserText: lastUser,
	}
}

// behave chooses the behaviour for req, sets the response headers, waits the delay and
// answers with the scripted error if there is one. It returns false when the exchange
// is over.
func (x *exchange) behave(req *Request, texts userTexts) (Behavior, bool) {
	b := x.s.behavior(req, texts)
	status := b.Status
	if status == http.StatusOK {
		status = 0
	}
	valid := status == 0 || (status >= 100 && status <= 999) // net/http panics on others
	h := x.w.Header()
	if x.d.headers != nil {
		answered := status
		if !valid {
			answered = http.StatusInternalServerError
		}
		x.d.headers(h, x, answered)
	}
	for k, v := range b.Headers {
		h.Set(k, v)
	}
	if !sleep(x.r.Context(), b.Delay) {
		return b, false
	}
	switch {
	case !valid:
		x.fail(apiError{status: http.StatusInternalServerError, message: "fakellm: script asked for invalid status " + strconv.Itoa(b.Status)})
		return b, false
	case status != 0:
		x.fail(apiError{status: status, typ: b.ErrorType, code: b.ErrorCode, message: b.ErrorMessage})
		return b, false
	}
	return b, true
}

// retryAfter is the Retry-After of the response in seconds, or def when it has none.
func retryAfter(h http.Header, def int64) int64 {
	if n, err := strconv.ParseInt(h.Get("Retry-After"), 10, 64); err == nil && n >= 0 {
		return n
	}
	return def
}
