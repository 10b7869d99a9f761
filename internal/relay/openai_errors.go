package relay

import (
	"encoding/json"
	"net/http"
)

// openAIError writes {"error":{"message","type","param","code"}}, OpenAI's error shape.
func openAIError(w http.ResponseWriter, status int, typ, msg, _ string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(openAIErrorBody(typ, msg)) //nolint:errcheck
}

func openAIErrorBody(typ, msg string) []byte {
	body, _ := json.Marshal(map[string]any{"error": map[string]any{
		"message": msg, "type": typ, "param": nil, "code": typ,
	}})
	return body
}

// openAIProtocolForErrors renders refusals for OpenAI-style callers of shared routes.
var openAIProtocolForErrors = protocol{provider: "openai", endpoint: "models", writeError: openAIError}
