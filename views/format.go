package views

import (
	"strconv"
	"time"

	"github.com/tollgate/tollgate/internal/money"
)

// usd renders nano-USD as dollars.
func usd(nano int64) string { return money.FormatUSD(nano) }

// signedUSD renders a ledger amount with an explicit sign.
func signedUSD(nano int64) string {
	if nano > 0 {
		return "+" + money.FormatUSD(nano)
	}
	return money.FormatUSD(nano)
}

// count renders an integer with thousands separators: 1234567 → "1,234,567".
func count(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	out := make([]byte, 0, len(s)+len(s)/3)
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// stamp is how pages show a time: UTC, to the second.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }

// isoStamp is the machine-readable form for <time datetime>.
func isoStamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// statusClass picks the badge colour of an HTTP status.
func statusClass(status int32) string {
	switch {
	case status >= 200 && status < 300:
		return "badge ok"
	case status == 429 || status >= 500:
		return "badge warn"
	default:
		return "badge bad"
	}
}

// keyStatusClass picks the badge colour of a key status.
func keyStatusClass(status string) string {
	if status == "active" {
		return "badge ok"
	}
	return "badge muted"
}

// curlExample is a ready request through the proxy, with the key left to the shell.
func curlExample(proxyURL string) string {
	return "curl " + proxyURL + "/v1/messages \\\n" +
		"  -H \"x-api-key: $TOLLGATE_API_KEY\" \\\n" +
		"  -H \"anthropic-version: 2023-06-01\" \\\n" +
		"  -H \"content-type: application/json\" \\\n" +
		"  -d '{\"model\": \"claude-sonnet-4-5\", \"max_tokens\": 256,\n" +
		"       \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}'"
}

// claudeExample points Claude Code at the proxy.
func claudeExample(proxyURL string) string {
	return "export ANTHROPIC_BASE_URL=" + proxyURL + "\n" +
		"export ANTHROPIC_API_KEY=$TOLLGATE_API_KEY\n" +
		"claude"
}
