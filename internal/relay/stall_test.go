package relay

import (
	"context"
	"io"
	"testing"
	"time"
)

// TestStallGuard: the header timer cancels an exchange whose headers do not come and
// stays quiet once they have; the idle watch cuts a read blocked for a whole period, lets
// a stream that keeps moving run, and never blames the upstream while the proxy is not
// reading (busy writing to a slow client).
func TestStallGuard(t *testing.T) {
	const period = 40 * time.Millisecond
	cancelled := func(ctx context.Context, within time.Duration) bool {
		select {
		case <-ctx.Done():
			return true
		case <-time.After(within):
			return false
		}
	}

	t.Run("no headers", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		g := newStallGuard(cancel, period)
		defer g.stop()
		if !cancelled(ctx, 20*period) || g.stalled() != stalledHeaders {
			t.Fatalf("headers never came: cancelled %v, stalled %d", ctx.Err(), g.stalled())
		}
	})

	t.Run("headers in time", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		g := newStallGuard(cancel, period)
		r, w := io.Pipe()
		body := g.watch(r, 0) // no idle limit
		if body != io.Reader(r) {
			t.Fatal("without an idle limit the body is not watched")
		}
		w.Close()
		if cancelled(ctx, 4*period) || g.stalled() != 0 {
			t.Fatalf("cancelled after the headers came: %v, stalled %d", ctx.Err(), g.stalled())
		}
		g.stop()
	})

	t.Run("stream", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		r, w := io.Pipe()
		context.AfterFunc(ctx, func() { r.CloseWithError(context.Canceled) })
		g := newStallGuard(cancel, 0)
		defer g.stop()
		body := g.watch(r, period)
		read := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, body)
			read <- err
		}()
		// Moving: a write every half period for six periods.
		for range 12 {
			if _, err := w.Write([]byte("data: {}\n\n")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(period / 2)
		}
		if ctx.Err() != nil {
			t.Fatal("a moving stream was cut")
		}
		// Quiet: cut within two periods (a little more for the machine).
		if !cancelled(ctx, 20*period) || g.stalled() != stalledIdle {
			t.Fatalf("a quiet stream was not cut: %v, stalled %d", ctx.Err(), g.stalled())
		}
		if err := <-read; err == nil {
			t.Fatal("the read of a cut stream ended cleanly")
		}
	})

	t.Run("slow client", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		r, w := io.Pipe()
		g := newStallGuard(cancel, 0)
		defer g.stop()
		body := g.watch(r, period)
		go w.Write([]byte("data: {}\n\n")) //nolint:errcheck
		buf := make([]byte, 64)
		if _, err := body.Read(buf); err != nil {
			t.Fatal(err)
		}
		// No read under way for five periods: the proxy is writing elsewhere.
		if cancelled(ctx, 5*period) {
			t.Fatal("cut while the proxy was not reading")
		}
		w.Close()
		if _, err := body.Read(buf); err != io.EOF {
			t.Fatalf("read after the pause: %v", err)
		}
	})
}
