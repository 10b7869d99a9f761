package usage

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/limit"
	"github.com/tollgate/tollgate/internal/testenv"
)

// TestAckTakesDebitsOffPendingSums: acknowledging stored entries takes their debits off
// their users' and keys' pending sums, deletes a sum that reaches zero or whose stream is
// empty, and — when another consumer already deleted some of the entries (both settled
// them) — deletes the sums instead of taking the amounts off twice.
func TestAckTakesDebitsOffPendingSums(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	stream := StreamKey(prefix)
	u1, u2, k1 := limit.PendingKey(prefix, 1), limit.PendingKey(prefix, 2), limit.KeyPendingKey(prefix, 1)
	if err := rdb.XGroupCreateMkStream(ctx, stream, ConsumerGroup, "0").Err(); err != nil {
		t.Fatal(err)
	}
	// add appends an entry whose debit counts in user's sum and, unless "", key's.
	add := func(user, key string, amount int64) {
		t.Helper()
		values := []any{StreamField, "{}", limit.PendingField, amount, limit.PendingKeyField, user}
		rdb.IncrBy(ctx, user, amount)
		if key != "" {
			values = append(values, limit.KeyPendingKeyField, key)
			rdb.IncrBy(ctx, key, amount)
		}
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: values}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	add(u1, k1, 40)
	add(u1, "", 60) // a key without a cap
	add(u2, k1, 25)
	read := func() []redis.XMessage {
		t.Helper()
		res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: ConsumerGroup, Consumer: "c",
			Streams: []string{stream, "0"}, Count: 2}).Result()
		if err != nil {
			t.Fatal(err)
		}
		return res[0].Messages
	}
	if _, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: ConsumerGroup, Consumer: "c",
		Streams: []string{stream, ">"}}).Result(); err != nil {
		t.Fatal(err)
	}
	settle := func(msgs []redis.XMessage) {
		t.Helper()
		ids, pending := make([]string, len(msgs)), map[string]int64{}
		for i, m := range msgs {
			ids[i] = m.ID
			addPending(pending, m)
		}
		pipe := rdb.TxPipeline()
		ack(ctx, pipe, stream, ids, len(msgs), pending)
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	sums := func(want1, want2, wantK int64) {
		t.Helper()
		for key, want := range map[string]int64{u1: want1, u2: want2, k1: wantK} {
			got, err := rdb.Get(ctx, key).Int64()
			if err == redis.Nil && want == 0 {
				continue
			}
			if err != nil || got != want {
				t.Fatalf("%s: %d %v, want %d", key, got, err, want)
			}
		}
	}

	first := read() // u1's 40 (k1's too) and 60
	settle(first[:1])
	sums(60, 25, 25)
	// Settled again (a consumer that claimed it from one still alive): this call deletes
	// nothing, so it cannot know whose debit was taken off; u1's and k1's sums go rather
	// than dropping what is still pending by another 40.
	settle(first[:1])
	sums(0, 25, 0)
	if n := rdb.Exists(ctx, u1, k1).Val(); n != 0 {
		t.Fatal("a sum kept after a double settlement")
	}
	rdb.IncrBy(ctx, u1, 60) // as they were
	rdb.IncrBy(ctx, k1, 25)
	// u2's sum drifted high (a worker without the sums deleted an entry of its): with the
	// stream emptied by this batch, nothing is pending, and the sums go all the same.
	rdb.IncrBy(ctx, u2, 7)
	settle(read()) // u1's 60 and u2's 25 (k1's too)
	sums(0, 0, 0)
	if n := rdb.Exists(ctx, u1, u2, k1).Val(); n != 0 {
		t.Fatalf("%d sums kept with the stream empty", n)
	}
	if n := rdb.XLen(ctx, stream).Val(); n != 0 {
		t.Fatalf("%d entries left", n)
	}
}
