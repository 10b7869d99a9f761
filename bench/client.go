package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The load generator is a small wrk-like HTTP/1.1 client: every worker owns one
// keep-alive connection and writes a pre-serialised request, so the client spends as
// little of the shared two cores as possible, and the same client measures direct and
// tollgate. Responses are parsed with net/http's ReadResponse (chunked or not).

// target is where requests go: fakellm itself (direct) or the proxy (tollgate), with
// the API keys to send (the first for single-connection runs).
type target struct {
	name string
	addr string
	keys []string
}

// rawRequests serialises a POST /v1/messages to t with body for each of t's keys; the
// closed-loop and fixed-rate runs give connection i the request of key i % len.
func rawRequests(t target, body []byte) [][]byte {
	reqs := make([][]byte, len(t.keys))
	for i, k := range t.keys {
		reqs[i] = rawRequestKey(t, k, body)
	}
	return reqs
}

// rawRequest serialises a POST /v1/messages to t with body and t's first key.
func rawRequest(t target, body []byte) []byte { return rawRequestKey(t, t.keys[0], body) }

func rawRequestKey(t target, key string, body []byte) []byte {
	h := "POST /v1/messages HTTP/1.1\r\n" +
		"Host: " + t.addr + "\r\n" +
		"User-Agent: tollgate-bench\r\n" +
		"Content-Type: application/json\r\n" +
		"Anthropic-Version: 2023-06-01\r\n" +
		"X-Api-Key: " + key + "\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	return append([]byte(h), body...)
}

// result is one request's outcome.
type result struct {
	latency time.Duration // write of the request to the end of the body
	ttfb    time.Duration // write of the request to the first byte of the body
	events  int           // SSE events ("\n\n"-terminated blocks) in the body
	gaps    []time.Duration
}

// conn is one keep-alive connection of a worker.
type conn struct {
	addr     string
	deadline time.Time
	c        net.Conn
	br       *bufio.Reader
	buf      []byte
}

func newConn(addr string, deadline time.Time) *conn {
	return &conn{addr: addr, deadline: deadline, buf: make([]byte, 32<<10)}
}

func (c *conn) close() {
	if c.c != nil {
		c.c.Close()
		c.c = nil
	}
}

var errStatus = errors.New("non-200 status")

// do sends req and reads the whole response. With gaps, it records the time between
// consecutive events (the flush check).
func (c *conn) do(req []byte, withGaps bool) (result, error) {
	var r result
	if c.c == nil {
		nc, err := net.DialTimeout("tcp", c.addr, 10*time.Second)
		if err != nil {
			return r, err
		}
		_ = nc.SetDeadline(c.deadline)
		c.c = nc
		if c.br == nil {
			c.br = bufio.NewReaderSize(nc, 16<<10)
		} else {
			c.br.Reset(nc)
		}
	}
	start := time.Now()
	if _, err := c.c.Write(req); err != nil {
		c.close()
		return r, err
	}
	var ev eventCounter
	var last time.Time
	status, keepAlive, err := readResponse(c.br, c.buf, func(p []byte) {
		now := time.Now()
		if r.ttfb == 0 {
			r.ttfb = now.Sub(start)
		}
		if n := ev.scan(p); n > 0 {
			r.events += n
			if withGaps {
				if !last.IsZero() {
					r.gaps = append(r.gaps, now.Sub(last))
				}
				r.gaps = append(r.gaps, make([]time.Duration, n-1)...) // same read: no gap
				last = now
			}
		}
	})
	r.latency = time.Since(start)
	if err != nil || !keepAlive {
		c.close()
	}
	if err != nil {
		return r, err
	}
	if status != http.StatusOK {
		return r, fmt.Errorf("%w %d", errStatus, status)
	}
	return r, nil
}

// eventCounter counts SSE events, blocks ended by a blank line, across reads.
type eventCounter struct{ prev byte }

func (e *eventCounter) scan(p []byte) int {
	n := 0
	for _, b := range p {
		if b == '\n' && e.prev == '\n' {
			n++
		}
		e.prev = b
	}
	return n
}

// readResponse reads one HTTP/1.1 response from br, calling body with each piece of
// the body as it is read (buf is the scratch space). It parses only what the bench needs
// (status, Content-Length, chunked encoding, Connection: close), without allocating, so
// that the client's own CPU stays small next to what it measures. keepAlive is false
// when the connection cannot be reused.
func readResponse(br *bufio.Reader, buf []byte, body func([]byte)) (status int, keepAlive bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, fmt.Errorf("malformed status line %q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, fmt.Errorf("malformed status line %q", line)
	}
	keepAlive = line[7] == '1'
	length, chunked := -1, false
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return status, false, err
		}
		if len(line) <= 2 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "content-length"):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return status, false, fmt.Errorf("malformed Content-Length %q", value)
			}
		case asciiEqualFold(name, "transfer-encoding"):
			chunked = asciiEqualFold(value, "chunked")
		case asciiEqualFold(name, "connection"):
			if asciiEqualFold(value, "close") {
				keepAlive = false
			}
		}
	}
	switch {
	case chunked:
		for {
			line, err = br.ReadSlice('\n')
			if err != nil {
				return status, false, err
			}
			size, err := parseChunkSize(line)
			if err != nil {
				return status, false, err
			}
			if size == 0 {
				for { // trailers, then the blank line
					if line, err = br.ReadSlice('\n'); err != nil {
						return status, false, err
					}
					if len(line) <= 2 {
						return status, keepAlive, nil
					}
				}
			}
			if err := readN(br, buf, size, body); err != nil {
				return status, false, err
			}
			if line, err = br.ReadSlice('\n'); err != nil || len(line) > 2 {
				return status, false, fmt.Errorf("chunk not followed by CRLF: %w", err)
			}
		}
	case length >= 0:
		err = readN(br, buf, length, body)
		return status, keepAlive && err == nil, err
	default: // the body ends with the connection
		for {
			n, err := br.Read(buf)
			if n > 0 {
				body(buf[:n])
			}
			if err == io.EOF {
				return status, false, nil
			}
			if err != nil {
				return status, false, err
			}
		}
	}
}

// readN reads exactly n bytes of body from br.
func readN(br *bufio.Reader, buf []byte, n int, body func([]byte)) error {
	for n > 0 {
		m, err := br.Read(buf[:min(n, len(buf))])
		if m > 0 {
			body(buf[:m])
			n -= m
		}
		if err != nil {
			if err == io.EOF && n > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

func parseChunkSize(line []byte) (int, error) {
	line = bytes.TrimRight(line, "\r\n")
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 32)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("malformed chunk size %q", line)
	}
	return int(n), nil
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// runStats is what one run of one target measured.
type runStats struct {
	ok       int
	errors   int
	elapsed  time.Duration
	latency  []time.Duration
	ttfb     []time.Duration
	events   []int
	gaps     []time.Duration
	firstErr error
}

func (s *runStats) add(r result, err error) {
	if err != nil {
		s.errors++
		if s.firstErr == nil {
			s.firstErr = err
		}
		return
	}
	s.ok++
	s.latency = append(s.latency, r.latency)
	s.ttfb = append(s.ttfb, r.ttfb)
	s.events = append(s.events, r.events)
	s.gaps = append(s.gaps, r.gaps...)
}

func (s *runStats) merge(o *runStats) {
	s.ok += o.ok
	s.errors += o.errors
	s.latency = append(s.latency, o.latency...)
	s.ttfb = append(s.ttfb, o.ttfb...)
	s.events = append(s.events, o.events...)
	s.gaps = append(s.gaps, o.gaps...)
	if s.firstErr == nil {
		s.firstErr = o.firstErr
	}
}

func (s *runStats) rps() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.ok) / s.elapsed.Seconds()
}

// closedLoop runs conns workers, each sending its request (reqs[i % len]) back to back
// on its own connection, for d: the maximum throughput at that concurrency.
func closedLoop(ctx context.Context, addr string, reqs [][]byte, conns int, d time.Duration) *runStats {
	start := time.Now()
	end := start.Add(d)
	per := make([]runStats, conns)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			st := &per[i]
			st.latency = make([]time.Duration, 0, 1<<14)
			st.ttfb = make([]time.Duration, 0, 1<<14)
			c := newConn(addr, end.Add(30*time.Second))
			defer c.close()
			req := reqs[i%len(reqs)]
			for ctx.Err() == nil && time.Now().Before(end) {
				r, err := c.do(req, false)
				st.add(r, err)
				if err != nil {
					time.Sleep(time.Millisecond) // don't spin on a refused connection
				}
			}
		})
	}
	wg.Wait()
	all := &runStats{elapsed: time.Since(start)}
	for i := range per {
		all.merge(&per[i])
	}
	return all
}

// fixedRate sends req at rate per second for d (an open loop: a request is due at its
// time whether or not earlier ones have finished), from a pool of workers that each own
// a connection. Latency is measured from the write, so a late dispatch is counted in
// late (over 2 ms) rather than hidden in the figures. The n-th request sent is
// reqs[n % len]: with one request per user, users take turns.
func fixedRate(ctx context.Context, addr string, reqs [][]byte, rate int, d time.Duration, workers int) (*runStats, int) {
	type job struct {
		due time.Time
		n   int
	}
	start := time.Now()
	end := start.Add(d)
	jobs := make(chan job, workers)
	per := make([]runStats, workers)
	var late atomic.Int64
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			st := &per[i]
			c := newConn(addr, end.Add(30*time.Second))
			defer c.close()
			for j := range jobs {
				// Timers wake up to a millisecond late when the process idles.
				if time.Since(j.due) > 2*time.Millisecond {
					late.Add(1)
				}
				st.add(c.do(reqs[j.n%len(reqs)], false))
			}
		})
	}
	interval := time.Second / time.Duration(rate)
	for i := 0; ; i++ {
		due := start.Add(time.Duration(i) * interval)
		if !due.Before(end) || ctx.Err() != nil {
			break
		}
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		select {
		case jobs <- job{due, i}:
		default:
			late.Add(1) // every worker busy: wait for one
			jobs <- job{due, i}
		}
	}
	close(jobs)
	wg.Wait()
	all := &runStats{elapsed: time.Since(start)}
	for i := range per {
		all.merge(&per[i])
	}
	return all, int(late.Load())
}

// flushCheck sends n slow streams one after another and records when each event arrives.
func flushCheck(ctx context.Context, addr string, req []byte, n int) *runStats {
	start := time.Now()
	st := &runStats{}
	c := newConn(addr, start.Add(time.Minute))
	defer c.close()
	for range n {
		if ctx.Err() != nil {
			break
		}
		st.add(c.do(req, true))
	}
	st.elapsed = time.Since(start)
	return st
}

// holdStreams opens n streams at once (dialling at most dialers at a time), each on its
// own connection, and reads them to the end. open counts the streams that have
// received their first byte and not yet finished.
func holdStreams(ctx context.Context, addr string, req []byte, n, dialers int, deadline time.Time, open *atomic.Int64) *runStats {
	start := time.Now()
	dial := make(chan struct{}, dialers)
	per := make([]runStats, n)
	var wg sync.WaitGroup
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		dial <- struct{}{}
		wg.Go(func() {
			st := &per[i]
			nc, err := net.DialTimeout("tcp", addr, 30*time.Second)
			<-dial
			if err != nil {
				st.add(result{}, err)
				return
			}
			defer nc.Close()
			_ = nc.SetDeadline(deadline)
			st.add(streamOnce(nc, req, open))
		})
	}
	wg.Wait()
	all := &runStats{elapsed: time.Since(start)}
	for i := range per {
		all.merge(&per[i])
	}
	return all
}

// streamOnce sends req on nc and reads the stream to its end, with small buffers as a
// client holding thousands of streams would.
func streamOnce(nc net.Conn, req []byte, open *atomic.Int64) (result, error) {
	var r result
	start := time.Now()
	if _, err := nc.Write(req); err != nil {
		return r, err
	}
	var ev eventCounter
	status, _, err := readResponse(bufio.NewReaderSize(nc, 4<<10), make([]byte, 4<<10), func(p []byte) {
		if r.ttfb == 0 {
			r.ttfb = time.Since(start)
			open.Add(1)
		}
		r.events += ev.scan(p)
	})
	if r.ttfb != 0 {
		open.Add(-1)
	}
	r.latency = time.Since(start)
	if err != nil {
		return r, err
	}
	if status != http.StatusOK {
		return r, fmt.Errorf("%w %d", errStatus, status)
	}
	return r, nil
}
