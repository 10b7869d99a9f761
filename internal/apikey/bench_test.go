package apikey

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The hot-path pieces of key checking, without the database behind the loader.

// BenchmarkCacheHit: a known, cached key (every request of a running client).
func BenchmarkCacheHit(b *testing.B) {
	k := Generate()
	c := NewCache(func(context.Context, []byte) (Info, error) {
		return Info{KeyID: 1, UserID: 1, Status: "active", UserStatus: "active"}, nil
	}, time.Hour)
	ctx := context.Background()
	if _, err := c.Get(ctx, k.Plaintext); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Get(ctx, k.Plaintext); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkUnknownKeyFlood: random well-formed keys against a loaded set of existing
// key-hash prefixes — refused without a lookup (the 10,000 bad keys per second case).
func BenchmarkUnknownKeyFlood(b *testing.B) {
	c := NewCache(func(context.Context, []byte) (Info, error) { return Info{}, ErrUnknown }, time.Hour)
	ctx := context.Background()
	existing := Generate()
	if err := c.ReloadKnown(ctx, func(context.Context) ([][]byte, error) { return [][]byte{existing.Hash}, nil }); err != nil {
		b.Fatal(err)
	}
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = Generate().Plaintext
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := c.Get(ctx, keys[i%len(keys)]); !errors.Is(err, ErrUnknown) && !errors.Is(err, ErrBusy) {
			b.Fatal(err)
		}
	}
}
