package relay

// validJSON reports whether b is exactly one JSON value, deciding as encoding/json.Valid
// does (its nesting limit of 10,000 included; bytes in strings are not checked as UTF-8,
// sniff does that separately) about four times as fast: every request body goes through
// it, and a Claude Code turn carries hundreds of kilobytes. FuzzValidJSON compares the
// two on arbitrary input.
func validJSON(b []byte) bool {
	const maxDepth = 10000
	const (
		value      = iota // a value is expected
		afterValue        // a value ended: ',', a closer or the end
		firstKey          // just after '{': a key or '}'
		key               // after ',' in an object: a key
	)
	var small [64]byte
	stack := small[:0] // open containers, '{' or '['
	st := value
	i := 0
	for {
		i = skipSpace(b, i)
		switch st {
		case value:
			if i >= len(b) {
				return false
			}
			switch c := b[i]; {
			case c == '{':
				if stack = append(stack, '{'); len(stack) > maxDepth {
					return false
				}
				i++
				st = firstKey
			case c == '[':
				if stack = append(stack, '['); len(stack) > maxDepth {
					return false
				}
				i = skipSpace(b, i+1)
				if i < len(b) && b[i] == ']' {
					stack = stack[:len(stack)-1]
					i++
					st = afterValue
				}
			case c == '"':
				if i = scanString(b, i); i < 0 {
					return false
				}
				st = afterValue
			case c == '-' || c >= '0' && c <= '9':
				if i = scanNumber(b, i); i < 0 {
					return false
				}
				st = afterValue
			case c == 't':
				if i = scanLiteral(b, i, "true"); i < 0 {
					return false
				}
				st = afterValue
			case c == 'f':
				if i = scanLiteral(b, i, "false"); i < 0 {
					return false
				}
				st = afterValue
			case c == 'n':
				if i = scanLiteral(b, i, "null"); i < 0 {
					return false
				}
				st = afterValue
			default:
				return false
			}
		case afterValue:
			if len(stack) == 0 {
				return i == len(b)
			}
			if i >= len(b) {
				return false
			}
			top := stack[len(stack)-1]
			switch b[i] {
			case ',':
				st = value
				if top == '{' {
					st = key
				}
			case '}':
				if top != '{' {
					return false
				}
				stack = stack[:len(stack)-1]
			case ']':
				if top != '[' {
					return false
				}
				stack = stack[:len(stack)-1]
			default:
				return false
			}
			i++
		case firstKey, key:
			if i >= len(b) {
				return false
			}
			if b[i] == '}' && st == firstKey {
				stack = stack[:len(stack)-1]
				i++
				st = afterValue
				continue
			}
			if b[i] != '"' {
				return false
			}
			if i = scanString(b, i); i < 0 {
				return false
			}
			if i = skipSpace(b, i); i >= len(b) || b[i] != ':' {
				return false
			}
			i++
			st = value
		}
	}
}

// scanString checks the string starting at b[i] == '"' and returns the index after it,
// or -1.
func scanString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		c := b[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		switch c {
		case '"':
			return i + 1
		case '\\':
			i++
			if i >= len(b) {
				return -1
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) {
					return -1
				}
				for _, h := range b[i+1 : i+5] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return -1
					}
				}
				i += 4
			default:
				return -1
			}
		default: // a control character
			return -1
		}
	}
	return -1
}

// scanNumber checks the number starting at b[i] and returns the index after it, or -1.
func scanNumber(b []byte, i int) int {
	digits := func(i int) (int, bool) {
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i, i > start
	}
	if b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return -1
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		i, _ = digits(i)
	default:
		return -1
	}
	var ok bool
	if i < len(b) && b[i] == '.' {
		if i, ok = digits(i + 1); !ok {
			return -1
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i, ok = digits(i); !ok {
			return -1
		}
	}
	return i
}

func scanLiteral(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}
