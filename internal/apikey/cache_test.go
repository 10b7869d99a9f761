package apikey

import (
	"context"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestCacheLoadsOnceAndInvalidates(t *testing.T) {
	good := Generate()
	var loads atomic.Int64
	c := NewCache(func(ctx context.Context, hash []byte) (Info, error) {
		loads.Add(1)
		time.Sleep(5 * time.Millisecond) // let concurrent misses pile up on single-flight
		if string(hash) == string(good.Hash) {
			return Info{KeyID: 1, UserID: 7, Status: "active", UserStatus: "active"}, nil
		}
		return Info{}, ErrUnknown
	}, time.Minute)

	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if info, err := c.Get(context.Background(), good.Plaintext); err != nil || info.KeyID != 1 {
				t.Errorf("Get = %+v, %v", info, err)
			}
		})
	}
	wg.Wait()
	if n := loads.Load(); n != 1 {
		t.Fatalf("20 concurrent misses made %d loads, want 1", n)
	}

	bad := Generate()
	for range 3 {
		if _, err := c.Get(context.Background(), bad.Plaintext); !errors.Is(err, ErrUnknown) {
			t.Fatalf("unknown key: err = %v", err)
		}
	}
	if n := loads.Load(); n != 2 {
		t.Fatalf("an unknown key looked up thrice made %d loads in total, want 2", n)
	}
	if _, err := c.Get(context.Background(), "not-a-key"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("malformed key: err = %v", err)
	}
	if n := loads.Load(); n != 2 {
		t.Fatal("a malformed key reached the loader")
	}

	c.InvalidateHash(hex.EncodeToString(good.Hash))
	c.Get(context.Background(), good.Plaintext)
	if n := loads.Load(); n != 3 {
		t.Fatalf("after InvalidateHash: %d loads, want 3", n)
	}
	c.InvalidateUser(7)
	c.Get(context.Background(), good.Plaintext)
	if n := loads.Load(); n != 4 {
		t.Fatalf("after InvalidateUser: %d loads, want 4", n)
	}
}

func TestCacheExpires(t *testing.T) {
	now := time.Now()
	var loads int
	c := NewCache(func(ctx context.Context, hash []byte) (Info, error) {
		loads++
		return Info{KeyID: 1}, nil
	}, time.Minute)
	c.now = func() time.Time { return now }
	k := Generate().Plaintext
	c.Get(context.Background(), k)
	c.Get(context.Background(), k)
	now = now.Add(61 * time.Second)
	c.Get(context.Background(), k)
	if loads != 2 {
		t.Fatalf("loads = %d, want 2 (one, then one after expiry)", loads)
	}
}

func TestUnknownKeysRefusedWithoutLookupOnceTheSetIsKnown(t *testing.T) {
	existing := Generate()
	var loads atomic.Int64
	c := NewCache(func(ctx context.Context, hash []byte) (Info, error) {
		loads.Add(1)
		if string(hash) == string(existing.Hash) {
			return Info{KeyID: 1}, nil
		}
		return Info{}, ErrUnknown
	}, time.Minute)
	if err := c.ReloadKnown(context.Background(), func(context.Context) ([][]byte, error) {
		return [][]byte{existing.Hash[:8]}, nil
	}); err != nil {
		t.Fatal(err)
	}
	for range 500 {
		if _, err := c.Get(context.Background(), Generate().Plaintext); !errors.Is(err, ErrUnknown) {
			t.Fatalf("random key: %v", err)
		}
	}
	if n := loads.Load(); n > 50 {
		t.Fatalf("500 random keys cost %d lookups, want at most the burst of 50", n)
	}
	if _, err := c.Get(context.Background(), existing.Plaintext); err != nil {
		t.Fatalf("existing key: %v", err)
	}
	// A key announced after the reload (created in the web app) is looked up normally.
	fresh := Generate()
	c.InvalidateHash(hex.EncodeToString(fresh.Hash))
	before := loads.Load()
	c.Get(context.Background(), fresh.Plaintext)
	if loads.Load() != before+1 {
		t.Fatal("an announced key was not looked up")
	}
}
