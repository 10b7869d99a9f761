package limit

import (
	"strconv"
	"testing"
	"time"
)

// TestNamesFollowTheClock: the cached dated names change with the UTC day and minute,
// and the per-id names read as the scripts' keys are documented (gate.go).
func TestNamesFollowTheClock(t *testing.T) {
	c := nameCache{prefix: "tg:", kind: "k"}
	n := c.get(42)
	if n.leases != "tg:conc:k:42" || n.waiting != "tg:waiting:k:42" || n.scope != "k:42" || n.own != nil {
		t.Fatalf("key names %+v", n)
	}
	day1 := time.Date(2026, 12, 31, 23, 59, 30, 0, time.UTC)
	day2 := day1.Add(time.Minute) // 2027-01-01 00:00:30
	for _, tc := range []struct {
		at           time.Time
		daily, month string
		rpm          string
	}{
		{day1, "tg:spend:k:42:d:20261231", "tg:spend:k:42:m:202612", "tg:rpm:42:" + itoa(day1.Unix()/60)},
		{day2, "tg:spend:k:42:d:20270101", "tg:spend:k:42:m:202701", "tg:rpm:42:" + itoa(day2.Unix()/60)},
		{day1, "tg:spend:k:42:d:20261231", "tg:spend:k:42:m:202612", "tg:rpm:42:" + itoa(day1.Unix()/60)},
	} {
		s := c.spendNames(n, 42, tc.at)
		if s.daily != tc.daily || s.month != tc.month {
			t.Errorf("%v: spend names %v %v, want %s %s", tc.at, s.daily, s.month, tc.daily, tc.month)
		}
		if r := c.rpmName(n, 42, tc.at); r != tc.rpm {
			t.Errorf("%v: rpm name %v, want %s", tc.at, r, tc.rpm)
		}
	}
	if c.get(42) != n {
		t.Error("names rebuilt for a cached id")
	}
	u := nameCache{prefix: "tg:", kind: "u"}
	if un := u.get(7); un.own != "tg:bal:7" || u.spendNames(un, 7, day1).month != nil {
		t.Errorf("user names %+v", un)
	}
	if a := (&nameCache{prefix: "tg:", kind: "a"}).get(3); a.own != "tg:astate:3" || a.leases != "tg:conc:a:3" {
		t.Errorf("account names %+v", a)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
