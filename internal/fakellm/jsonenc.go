package fakellm

import (
	"strconv"
	"unicode/utf8"
)

// The responses are built by appending bytes: the shapes are fixed, and this keeps the
// fake cheap enough to serve as the "direct" baseline in benchmarks.

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// encoding/json does.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func appendField(b []byte, name string, v int64) []byte {
	b = append(b, '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, v, 10)
}

// appendFullUsage appends the usage object of message_start and of a non-streaming
// message.
func appendFullUsage(b []byte, u Usage) []byte {
	b = append(b, '{')
	b = appendField(b, "input_tokens", u.InputTokens)
	b = append(b, ',')
	b = appendField(b, "cache_creation_input_tokens", u.CacheCreation5m+u.CacheCreation1h)
	b = append(b, ',')
	b = appendField(b, "cache_read_input_tokens", u.CacheRead)
	b = append(b, `,"cache_creation":{`...)
	b = appendField(b, "ephemeral_5m_input_tokens", u.CacheCreation5m)
	b = append(b, ',')
	b = appendField(b, "ephemeral_1h_input_tokens", u.CacheCreation1h)
	b = append(b, "},"...)
	b = appendField(b, "output_tokens", u.OutputTokens)
	return append(b, `,"service_tier":"standard"}`...)
}

// appendDeltaUsage appends the cumulative usage of message_delta, which (like the real
// API's) has no cache_creation breakdown: that is only in message_start.
func appendDeltaUsage(b []byte, u Usage) []byte {
	b = append(b, '{')
	b = appendField(b, "input_tokens", u.InputTokens)
	b = append(b, ',')
	b = appendField(b, "cache_creation_input_tokens", u.CacheCreation5m+u.CacheCreation1h)
	b = append(b, ',')
	b = appendField(b, "cache_read_input_tokens", u.CacheRead)
	b = append(b, ',')
	b = appendField(b, "output_tokens", u.OutputTokens)
	return append(b, '}')
}
